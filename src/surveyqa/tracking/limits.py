"""A limit on request bodies: a body over ``max_body_bytes`` gets 413 before anything reads it.

Why as ASGI middleware: FastAPI parses JSON bodies before any route runs, so an oversized
submission (say 50 MB) would be read into memory, validated and stored. Here a declared
``Content-Length`` over the limit is refused at once; a chunked body without one is read up to
the limit and refused as soon as it passes it. Nothing reaches the routes, so nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware refusing request bodies larger than ``max_bytes`` with 413."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps(
            {"detail": f"request body of {size} bytes is over the limit of {self.max_bytes} bytes",
             "hint": "split the submission into several runs, or raise max_body_bytes (docs/tracking.md)"}
        ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(send, length.decode(errors="replace"))
                return
            await self.app(scope, receive, send)
            return
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            await self.app(scope, receive, send)
            return
        # chunked: read it all (up to the limit) before the app sees any of it
        messages, total = [], 0
        while True:
            message = await receive()
            messages.append(message)
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                await self._refuse(send, f"more than {self.max_bytes}")
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

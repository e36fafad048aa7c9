"""SQuaSH's upload API, so that lsst.verify's own ``dispatch_verify.py --url http://HOST/squash``
uploads to surveyqa unchanged.

The client (lsst.verify ``squash.py``) does three things, and each route here answers it the way
SQuaSH (lsst-sqre/squash-restful-api, Flask-JWT) did:

- ``GET /squash``: a JSON map of endpoint names to absolute URLs (it looks up ``auth`` and ``job``);
  the URLs are built from ``public_url`` when set, else from the request and its proxy headers.
- ``POST /squash/auth`` with ``{"username", "password"}``: the password is a surveyqa token whose
  name is the username; the answer is ``{"access_token"}``, or 401 with Flask-JWT's error body.
- ``POST /squash/job`` with ``Authorization: JWT <token>`` (``Bearer`` works too) and the job's
  ``measurements``, ``blobs`` and ``meta``: 202 when stored, 200 when the same build was already
  stored (see `surveyqa.tracking.ingest.job_key`), never a redirect (the client does not follow
  them); the body has the ``message`` string the client logs, besides our `SubmitResult` fields.

Storage and checks are the tracking service's (`TrackingService.submit_job`); this module only
translates the protocol.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from surveyqa.errors import SurveyQAError
from surveyqa.tracking.schemas import SubmitResult, VerifyJob
from surveyqa.tracking.service import TrackingService
from surveyqa.tracking.tokens import authenticate, verify_token

__all__ = ["squash_router", "public_base", "PREFIX"]

PREFIX = "/squash"

#: Endpoint names of the map -> path under the service root (SQuaSH's names, where we have one).
_ENDPOINTS = {
    "auth": f"{PREFIX}/auth",
    "job": f"{PREFIX}/job",
    "jobs": "/api/runs",
    "metrics": "/api/metrics",
    "alerts": "/api/alerts",
    "openapi": "/openapi.json",
}


def _first(value: str | None) -> str | None:
    return value.split(",")[0].strip() or None if value else None


def _forwarded(header: str | None) -> dict[str, str]:
    """The first element of an RFC 7239 ``Forwarded`` header as a dict (``proto``, ``host``...)."""
    out: dict[str, str] = {}
    for pair in (_first(header) or "").split(";"):
        key, sep, value = pair.partition("=")
        if sep:
            out[key.strip().lower()] = value.strip().strip('"')
    return out


def public_base(request: Request, public_url: str = "") -> str:
    """The URL clients reach the service root at, without a trailing slash.

    ``public_url`` when configured; otherwise the request's own scheme and host, replaced by a
    proxy's ``Forwarded`` (proto, host) or ``X-Forwarded-Proto`` / ``-Host`` / ``-Port`` /
    ``-Prefix`` headers when it sent them.
    """
    if public_url:
        return public_url.rstrip("/")
    h = request.headers
    fwd = _forwarded(h.get("forwarded"))
    scheme = fwd.get("proto") or _first(h.get("x-forwarded-proto")) or request.url.scheme
    host = fwd.get("host") or _first(h.get("x-forwarded-host")) or h.get("host") or request.url.netloc
    port = _first(h.get("x-forwarded-port"))
    if port and ":" not in host.rsplit("]", 1)[-1] and port != {"http": "80", "https": "443"}.get(scheme):
        host = f"{host}:{port}"
    prefix = (_first(h.get("x-forwarded-prefix")) or "").rstrip("/")
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{scheme}://{host}{prefix}{root}"


def _unauthorized(error: str, description: str, hint: str) -> JSONResponse:
    """Flask-JWT's 401 body (``status_code``, ``error``, ``description``) plus our ``detail``/``hint``."""
    body = {"status_code": 401, "error": error, "description": description, "detail": description, "hint": hint}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": 'JWT realm="Login Required"'})


def _token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() in ("jwt", "bearer") and token.strip() else None


def squash_router(service: TrackingService) -> APIRouter:
    """The SQuaSH-compatible routes over ``service``."""
    router = APIRouter(tags=["squash"])

    @router.get(PREFIX, summary="SQuaSH endpoint map")
    @router.get(PREFIX + "/", include_in_schema=False)
    def endpoints(request: Request) -> dict[str, str]:
        """Endpoint names to absolute URLs, as SQuaSH's API root answered (lsst.verify reads ``auth`` and ``job``)."""
        base = public_base(request, service.config.public_url)
        return {name: base + path for name, path in _ENDPOINTS.items()}

    @router.post(PREFIX + "/auth", summary="SQuaSH login", responses={401: {"description": "invalid credentials"}})
    @router.post(PREFIX + "/auth/", include_in_schema=False)  # no redirect: the client would not follow it
    async def auth(request: Request) -> Any:
        """Exchange ``{"username", "password"}`` for ``{"access_token"}``: the password is the token
        named ``username`` (`surveyqa track token create NAME`), and it is the access token."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        username = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        valid = isinstance(username, str) and isinstance(password, str)
        if not valid or not await run_in_threadpool(authenticate, service.engine, username, password):
            return _unauthorized("Bad Request", "Invalid credentials",
                                 "the password is the token `surveyqa track token create USERNAME` printed")
        return {"access_token": password}

    @router.post(
        PREFIX + "/job",
        summary="SQuaSH job upload",
        status_code=202,
        responses={
            200: {"description": "this build's job was already stored: nothing changed"},
            401: {"description": "no valid access token"},
            422: {"description": "not an lsst.verify job"},
        },
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerifyJob"}}}}},
    )
    @router.post(PREFIX + "/job/", include_in_schema=False, status_code=202)
    async def job(request: Request) -> JSONResponse:
        """Store a job as ``dispatch_verify.py`` sends it (``measurements``, ``blobs``, ``meta``).

        The token is checked before the body is read, so a refused upload is told why it was refused.
        """
        token = _token(request)
        if token is None:
            return _unauthorized("Authorization Required", "Request does not contain an access token",
                                 "send 'Authorization: JWT <token>' (POST /squash/auth gives one)")
        if await run_in_threadpool(verify_token, service.engine, token) is None:
            return _unauthorized("Invalid token", "Signature verification failed",
                                 "the token is unknown or revoked: make one with `surveyqa track token create NAME`")
        try:
            parsed = VerifyJob.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "body"
            message = f"not an lsst.verify job: {where}: {first['msg']}"
            return JSONResponse({"message": message, "detail": message, "hint": "send the Job JSON dispatch_verify.py makes"},
                                status_code=422)
        try:
            result = SubmitResult(**await run_in_threadpool(service.submit_job, parsed)).model_dump()
        except SurveyQAError as exc:  # refused as a whole (unknown metric or unit...): nothing stored
            return JSONResponse({"message": exc.message, "detail": exc.message, "hint": exc.hint}, status_code=422)
        if result["created"]:
            message = f"Job stored as run {result['run_id']} ({result['values']} values): {result['url']}"
        else:
            message = f"Job already stored as run {result['run_id']}: nothing changed ({result['url']})"
        return JSONResponse({**result, "message": message}, status_code=202 if result["created"] else 200)

    return router

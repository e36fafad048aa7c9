"""Real things for the tracking tests: databases (SQLite file, fresh PostgreSQL database), a
uvicorn server on a free port, a local SMTP server (aiosmtpd) and a local webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
VERIFY_JOB = Path(__file__).resolve().parents[2] / "shared" / "data" / "squash_jobs" / "verify_job.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_available() -> bool:
    try:
        with sa.create_engine(PG_ADMIN).connect() as c:
            c.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False


def make_db(kind: str, tmp_path: Path):
    """Yield a database URL of ``kind`` ('sqlite' or 'postgresql'), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'track.db'}"
        return
    if not _pg_available():
        pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (start it with .ci/run)")
    name = f"sq_track_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    yield from make_db(request.param, tmp_path)


class Server:
    """A uvicorn server running the tracking app in a thread, on a free port."""

    def __init__(self, config):
        import uvicorn

        from surveyqa.tracking.app import create_app
        from surveyqa.tracking.service import TrackingService

        self.port = free_port()
        config.base_url = f"http://127.0.0.1:{self.port}"
        self.url = config.base_url
        self.service = TrackingService.open(config)
        app = create_app(config, self.service)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.time() + 30
        while not self._server.started:
            if time.time() > deadline or not self._thread.is_alive():
                raise RuntimeError("tracking server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self.service.engine.dispose()

    def token(self, name: str = "test") -> str:
        from surveyqa.tracking.tokens import create_token

        return create_token(self.service.engine, name)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


@pytest.fixture
def make_server(db_url):
    """Start a server over ``db_url`` with the given config overrides."""
    servers = []

    def start(**overrides) -> Server:
        from surveyqa.tracking.config import TrackingConfig

        s = Server(TrackingConfig(db=db_url, **overrides)).__enter__()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.__exit__()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free port; ``.messages`` holds what it received."""
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append({"to": list(envelope.rcpt_tos), "message": message_from_bytes(envelope.content)})
            return "250 OK"

    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.messages = handler.messages
    yield controller
    controller.stop()


@pytest.fixture
def webhook_receiver():
    """A real HTTP server on a free port recording the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.received = received
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield server
    server.shutdown()
    server.server_close()


def wait_for_outbox(url: str, done, timeout: float = 60.0) -> dict:
    """Poll ``GET /api/outbox`` of the server at ``url`` until ``done(counts)``; return the counts.

    Delivery runs in the background: a test waits for it as a user would, by watching the outbox.
    """
    deadline = time.time() + timeout
    while True:
        counts = httpx.get(f"{url}/api/outbox", timeout=30).json()
        if done(counts):
            return counts
        if time.time() > deadline:
            raise AssertionError(f"outbox did not settle in {timeout} s: {counts}")
        time.sleep(0.1)


def delivered(counts: dict) -> bool:
    """Nothing left to check or to send (sent or given up)."""
    return counts["pending_checks"] == 0 and counts["deliveries_pending"] == 0 and counts["deliveries_sending"] == 0


def job_with(values: dict[str, float], date: str, packages: dict[str, tuple[str, str]] | None = None, **meta) -> dict:
    """A small lsst.verify job: one measurement per metric, packages name -> (version, sha)."""
    packages = packages or {"pipe_tasks": ("1.0", "a" * 40)}
    return {
        "measurements": [{"metric": m, "identifier": uuid.uuid4().hex, "value": v, "unit": "mmag", "blob_refs": []} for m, v in values.items()],
        "blobs": [],
        "metrics": [{"name": m, "unit": "mmag", "description": "test metric", "tags": [], "reference": {}} for m in values],
        "specs": [],
        "meta": {
            "instrument": "HSC",
            "filter_name": "r",
            "dataset": "ci_hsc",
            "env": {"env_name": "test", "date": date, "ci_id": date},
            "packages": {n: {"name": n, "eups_version": v, "git_sha": s, "git_url": None, "git_branch": None} for n, (v, s) in packages.items()},
            **meta,
        },
    }

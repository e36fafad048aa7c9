"""API tokens: made by an admin command, shown once, stored only as a SHA-256 hash.

Tokens are 32 random bytes, so a fast hash is enough (no dictionary to attack); the plain token
is never written anywhere by the service.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from surveyqa.errors import SurveyQAError
from surveyqa.tracking.db import token_t

__all__ = ["create_token", "verify_token", "authenticate", "revoke_token", "list_tokens", "hash_token"]

_PREFIX = "sqt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str) -> str:
    """Make a token called ``name`` and return it (the only time it is seen in clear).

    Raises
    ------
    SurveyQAError
        If a token of that name exists.
    """
    if not name or len(name) > 100:
        raise SurveyQAError("a token name needs 1 to 100 characters", "e.g. `surveyqa track token create ci`")
    token = _PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        if conn.execute(sa.select(token_t.c.id).where(token_t.c.name == name)).first():
            raise SurveyQAError(f"a token named {name!r} exists", "choose another name or revoke it first")
        conn.execute(
            token_t.insert().values(name=name, hash=hash_token(token), created=dt.datetime.now(dt.UTC).replace(tzinfo=None), revoked=False)
        )
    return token


def verify_token(engine: Engine, token: str | None) -> str | None:
    """The name of the valid token ``token``, or None."""
    if not token:
        return None
    with engine.connect() as conn:
        return conn.execute(
            sa.select(token_t.c.name).where(token_t.c.hash == hash_token(token), token_t.c.revoked.is_(False))
        ).scalar()


def authenticate(engine: Engine, username: str | None, password: str | None) -> bool:
    """Whether ``password`` is the valid token named ``username`` (SQuaSH's ``/auth`` login)."""
    return bool(username) and verify_token(engine, password) == username


def revoke_token(engine: Engine, name: str) -> bool:
    with engine.begin() as conn:
        return conn.execute(token_t.update().where(token_t.c.name == name).values(revoked=True)).rowcount > 0


def list_tokens(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [
            {"name": r.name, "created": r.created.isoformat() + "Z", "revoked": r.revoked}
            for r in conn.execute(sa.select(token_t).order_by(token_t.c.name))
        ]

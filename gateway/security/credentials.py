"""Secrets people hold: passwords (Argon2id), API tokens and session ids, and how each is checked.

Passwords are hashed with Argon2id through argon2-cffi (RFC 9106 parameters: 64 MiB,
3 passes), a memory-hard function, so a stolen database costs an attacker memory per
guess and not only time. Hashing runs in a thread, at most two at a time, so a burst
of logins can neither block the event loop nor exhaust memory.

Tokens and session ids are 256-bit random values; the store keeps only their SHA-256.
They are not passwords people choose, so a fast hash is enough: nobody can guess
2**256 values, memory-hard or not.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import re
import secrets
import string
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "PasswordRejected",
    "ParsedToken",
    "check_password_policy",
    "csrf_token_for",
    "generate_password",
    "hash_password",
    "hash_password_sync",
    "needs_rehash",
    "new_session_id",
    "new_token",
    "parse_token",
    "session_key",
    "same_secret",
    "token_matches",
    "token_secret_hash",
    "verify_password",
    "verify_password_sync",
]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # beyond this, hashing is only a way to make the server work

_HASHER = PasswordHasher()  # Argon2id, RFC 9106 "second recommended" parameters
# Concurrent hashes, whichever event loop or thread asks: each takes 64 MiB and a core for ~0.1 s.
_SLOTS = threading.BoundedSemaphore(2)


@functools.cache
def _dummy_hash() -> str:
    """A real hash of a random password: checking an unknown user costs what checking a known one does."""
    return _HASHER.hash(secrets.token_urlsafe(16))


class PasswordRejected(ValueError):
    """A new password that the policy refuses; the message says why."""


def check_password_policy(password: str, user: str | None = None) -> None:
    """Refuse a password that is too short, too long, the user's own name, or one character repeated."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if user and user.lower() in password.lower():
        raise PasswordRejected("a password must not contain the user name")
    if len(set(password)) < 5:
        raise PasswordRejected("a password needs at least 5 different characters")


def generate_password(length: int = 20) -> str:
    """A random password of letters and digits, easy to copy from a terminal."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def hash_password_sync(password: str) -> str:
    with _SLOTS:
        return _HASHER.hash(password)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


def verify_password_sync(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; a missing hash costs a hash as well (no timing oracle)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    with _SLOTS:
        try:
            return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


async def verify_password(stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password_sync, stored, password)


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash uses weaker parameters than today's (rehash it at the next login)."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


# --------------------------------------------------------------------------- API tokens

TOKEN_PREFIX = "gwt_"
_TOKEN = re.compile(r"^gwt_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    token_id: str
    secret: str


def new_token() -> tuple[str, str]:
    """(token id, the full token ``gwt_<id>_<secret>``): the id is public, the whole token is the secret."""
    token_id = secrets.token_hex(6)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def parse_token(text: str) -> ParsedToken | None:
    m = _TOKEN.match(text.strip())
    return ParsedToken(m.group(1), m.group(2)) if m else None


def token_secret_hash(token_id: str, secret: str) -> str:
    return hashlib.sha256(f"gateway api token\x00{token_id}\x00{secret}".encode()).hexdigest()


def token_matches(stored_hash: str, token: ParsedToken) -> bool:
    return hmac.compare_digest(stored_hash, token_secret_hash(token.token_id, token.secret))


# --------------------------------------------------------------------------- sessions


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def session_key(session_id: str) -> str:
    """What the store keeps of a session id."""
    return hashlib.sha256(f"gateway session\x00{session_id}".encode()).hexdigest()


def csrf_token_for(session_id: str) -> str:
    """The session's CSRF token: derived from the secret session id, so neither stored nor guessable."""
    return hashlib.sha256(f"gateway csrf\x00{session_id}".encode()).hexdigest()


def same_secret(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())

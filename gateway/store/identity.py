"""People in the store: users, console sessions and API tokens; and reads narrowed to an operator's systems.

Operations are plain functions over a DB-API connection — ``op(conn, chain, …)`` for
writes (run on the store's writer, each change with its audit entry in the same
transaction), ``q(conn, …)`` for reads — in SQL that SQLite and PostgreSQL both accept.
:class:`IdentityStoreMixin` runs them through a backend's ``_write`` / ``_read``.

Audit entries name accounts by their login name and the OS user or account that made
the change; never a display name, a password, a token or a session id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.store.base import StoreError
from gateway.store.sqlite_audit import AUDIT_INSERT  # the one way an entry row is written (plain SQL)

if TYPE_CHECKING:
    from gateway.audit.chain import ChainWriter

T = TypeVar("T")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
Conn = Any  # a DB-API connection (sqlite3.Connection today)

_USER_COLS = ("name, display_name, role, systems, password_hash, password_set_at, created_at, created_by,"
              " updated_at, disabled_at, last_login_at")
_TOKEN_COLS = ("token_id, secret_hash, user_name, label, created_at, created_by, expires_at, revoked_at, revoked_by,"
               " last_used_at, last_used_from")


class IdentityError(StoreError):
    """A change to users or tokens that cannot be made (unknown user, name taken …); the message says why."""


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    display_name: str | None
    role: str
    systems: tuple[str, ...] | None  # operator: bound systems; None: all
    password_hash: str | None
    password_set_at: float | None
    created_at: float
    created_by: str
    updated_at: float
    disabled_at: float | None
    last_login_at: float | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class SessionRow:
    id_hash: str
    user_name: str
    created_at: float
    last_seen_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenRow:
    token_id: str
    secret_hash: str
    user_name: str
    label: str
    created_at: float
    created_by: str
    expires_at: float
    revoked_at: float | None
    revoked_by: str | None
    last_used_at: float | None
    last_used_from: str | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


def _user(row: Sequence[Any]) -> UserRow:
    systems = tuple(json.loads(row[3])) if row[3] is not None else None
    return UserRow(row[0], row[1], row[2], systems, *row[4:])


def _audit(conn: Conn, chain: ChainWriter, action: str, detail: dict[str, Any]) -> None:
    at = datetime.now(_CHINA).isoformat(timespec="milliseconds")  # as every audit entry's "at"
    seq, _, _, digest, body = chain.append(at, action, detail=detail)
    conn.execute(AUDIT_INSERT, (seq, digest, body))


# --------------------------------------------------------------------------- users


def get_user(conn: Conn, name: str) -> UserRow | None:
    row = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()
    return _user(row) if row else None


def list_users(conn: Conn) -> list[UserRow]:
    return [_user(r) for r in conn.execute(f"SELECT {_USER_COLS} FROM users ORDER BY name")]


def count_users(conn: Conn, role: str | None = None) -> int:
    if role is None:
        return conn.execute("SELECT count(*) FROM users WHERE disabled_at IS NULL").fetchone()[0]
    return conn.execute("SELECT count(*) FROM users WHERE disabled_at IS NULL AND role = ?", (role,)).fetchone()[0]


def _need(conn: Conn, name: str) -> UserRow:
    user = get_user(conn, name)
    if user is None:
        raise IdentityError(f"no user {name!r} (see `gateway users list`)")
    return user


def add_user(conn: Conn, chain: ChainWriter, name: str, role: str, systems: Sequence[str] | None,
             display_name: str | None, password_hash: str | None, actor: str) -> UserRow:
    if get_user(conn, name) is not None:
        raise IdentityError(f"user {name!r} exists already (change it with set-role, passwd, disable)")
    now = time.time()
    conn.execute(f"INSERT INTO users({_USER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (name, display_name, role, json.dumps(sorted(systems)) if systems is not None else None,
                  password_hash, now if password_hash else None, now, actor, now, None, None))
    _audit(conn, chain, "user_changed", {"change": "added", "user": name, "role": role,
                                         "systems": sorted(systems) if systems is not None else None,
                                         "console_login": password_hash is not None, "by": actor})
    return _need(conn, name)


def set_role(conn: Conn, chain: ChainWriter, name: str, role: str, systems: Sequence[str] | None,
             actor: str) -> UserRow:
    before = _need(conn, name)
    conn.execute("UPDATE users SET role = ?, systems = ?, updated_at = ? WHERE name = ?",
                 (role, json.dumps(sorted(systems)) if systems is not None else None, time.time(), name))
    _audit(conn, chain, "user_changed", {
        "change": "role_set", "user": name, "role": role, "systems": sorted(systems) if systems is not None else None,
        "previous_role": before.role, "previous_systems": list(before.systems) if before.systems is not None else None,
        "by": actor})
    return _need(conn, name)


def set_password(conn: Conn, chain: ChainWriter, name: str, password_hash: str, actor: str) -> int:
    """Set the password and end every session of the user; returns how many sessions ended."""
    _need(conn, name)
    now = time.time()
    conn.execute("UPDATE users SET password_hash = ?, password_set_at = ?, updated_at = ? WHERE name = ?",
                 (password_hash, now, now, name))
    ended = conn.execute("DELETE FROM user_sessions WHERE user_name = ?", (name,)).rowcount
    _audit(conn, chain, "user_changed", {"change": "password_set", "user": name, "sessions_ended": ended,
                                         "by": actor})
    return ended


def rehash_password(conn: Conn, chain: ChainWriter, name: str, old_hash: str, new_hash: str) -> None:
    """Replace a hash made with older parameters after a successful login (same password, no audit)."""
    conn.execute("UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?", (new_hash, name, old_hash))


def set_disabled(conn: Conn, chain: ChainWriter, name: str, disabled: bool, actor: str) -> int:
    """Disable (ending its sessions; its tokens stop working) or enable an account; returns sessions ended."""
    user = _need(conn, name)
    now = time.time()
    ended = 0
    if disabled:
        conn.execute("UPDATE users SET disabled_at = ?, updated_at = ? WHERE name = ?",
                     (user.disabled_at or now, now, name))
        ended = conn.execute("DELETE FROM user_sessions WHERE user_name = ?", (name,)).rowcount
    else:
        conn.execute("UPDATE users SET disabled_at = NULL, updated_at = ? WHERE name = ?", (now, name))
    _audit(conn, chain, "user_changed", {"change": "disabled" if disabled else "enabled", "user": name,
                                         "sessions_ended": ended, "by": actor})
    return ended


# --------------------------------------------------------------------------- sessions


def create_session(conn: Conn, chain: ChainWriter, id_hash: str, user: str, lifetime: float, remote: str | None,
                   user_agent: str | None, via: str) -> SessionRow:
    """A new session (a new id at every login) with its ``login`` entry; expired sessions are swept."""
    now = time.time()
    conn.execute("DELETE FROM user_sessions WHERE expires_at <= ?", (now,))
    conn.execute("INSERT INTO user_sessions(id_hash, user_name, created_at, last_seen_at, expires_at, remote,"
                 " user_agent) VALUES (?,?,?,?,?,?,?)",
                 (id_hash, user, now, now, now + lifetime, remote, (user_agent or "")[:300] or None))
    conn.execute("UPDATE users SET last_login_at = ? WHERE name = ?", (now, user))
    _audit(conn, chain, "login", {"user": user, "via": via, "remote": remote, "session": id_hash[:12]})
    return SessionRow(id_hash, user, now, now, now + lifetime)


def find_session(conn: Conn, id_hash: str) -> tuple[SessionRow, UserRow] | None:
    row = conn.execute("SELECT id_hash, user_name, created_at, last_seen_at, expires_at FROM user_sessions"
                       " WHERE id_hash = ?", (id_hash,)).fetchone()
    if row is None:
        return None
    user = get_user(conn, row[1])
    return (SessionRow(*row), user) if user is not None else None


def touch_session(conn: Conn, chain: ChainWriter, id_hash: str, now: float) -> None:
    conn.execute("UPDATE user_sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?",
                 (now, id_hash, now))


def end_session(conn: Conn, chain: ChainWriter, id_hash: str, reason: str) -> bool:
    """Delete a session with a ``logout`` entry saying why (logout, idle, expired); False if it was gone."""
    row = conn.execute("SELECT user_name FROM user_sessions WHERE id_hash = ?", (id_hash,)).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM user_sessions WHERE id_hash = ?", (id_hash,))
    _audit(conn, chain, "logout", {"user": row[0], "reason": reason, "session": id_hash[:12]})
    return True


def count_sessions(conn: Conn, user: str) -> int:
    return conn.execute("SELECT count(*) FROM user_sessions WHERE user_name = ? AND expires_at > ?",
                        (user, time.time())).fetchone()[0]


# --------------------------------------------------------------------------- API tokens


def create_token(conn: Conn, chain: ChainWriter, token_id: str, secret_hash: str, user: str, label: str,
                 expires_at: float, actor: str) -> TokenRow:
    owner = _need(conn, user)
    if not owner.active:
        raise IdentityError(f"user {user!r} is disabled; enable it before giving it a token")
    now = time.time()
    conn.execute(f"INSERT INTO api_tokens({_TOKEN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (token_id, secret_hash, user, label, now, actor, expires_at, None, None, None, None))
    _audit(conn, chain, "token_changed", {"change": "created", "token": token_id, "user": user, "label": label,
                                          "expires_at": expires_at, "by": actor})
    return TokenRow(token_id, secret_hash, user, label, now, actor, expires_at, None, None, None, None)


def get_token(conn: Conn, token_id: str) -> TokenRow | None:
    row = conn.execute(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE token_id = ?", (token_id,)).fetchone()
    return TokenRow(*row) if row else None


def find_token(conn: Conn, token_id: str) -> tuple[TokenRow, UserRow] | None:
    token = get_token(conn, token_id)
    if token is None:
        return None
    user = get_user(conn, token.user_name)
    return (token, user) if user is not None else None


def list_tokens(conn: Conn, user: str | None = None) -> list[TokenRow]:
    if user is None:
        rows = conn.execute(f"SELECT {_TOKEN_COLS} FROM api_tokens ORDER BY created_at, token_id")
    else:
        rows = conn.execute(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE user_name = ? ORDER BY created_at, token_id",
                            (user,))
    return [TokenRow(*r) for r in rows]


def revoke_token(conn: Conn, chain: ChainWriter, token_id: str, actor: str) -> TokenRow:
    token = get_token(conn, token_id)
    if token is None:
        raise IdentityError(f"no token {token_id!r} (see `gateway tokens list`)")
    if token.revoked_at is not None:
        raise IdentityError(f"token {token_id} was revoked already")
    now = time.time()
    conn.execute("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE token_id = ?", (now, actor, token_id))
    _audit(conn, chain, "token_changed", {"change": "revoked", "token": token_id, "user": token.user_name,
                                          "by": actor})
    return get_token(conn, token_id)  # type: ignore[return-value]


def touch_token(conn: Conn, chain: ChainWriter, token_id: str, now: float, remote: str | None) -> None:
    conn.execute("UPDATE api_tokens SET last_used_at = ?, last_used_from = ? WHERE token_id = ?",
                 (now, remote, token_id))


# --------------------------------------------------------------------------- reads narrowed to systems


def _in(column: str, values: Sequence[str]) -> tuple[str, list[str]]:
    if not values:
        return "1 = 0", []
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


def records_in(conn: Conn, systems: Sequence[str], case_no: str | None, kind: str | None, limit: int,
               after_id: int) -> list[dict[str, Any]]:
    """Like ``Store.list_records``, only records received from ``systems``."""
    cond, args = _in("system", systems)
    where, params = ["id > ?", cond], [after_id, *args]
    for col, val in (("case_no", case_no), ("kind", kind)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    rows = conn.execute(
        "SELECT id, system, kind, record_key, version, case_no, status, receipt_id, receipt_time, ref,"
    " correlation_id, body"
        f" FROM records WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", (*params, limit))
    cols = ["id", "system", "kind", "record_key", "version", "case_no", "status", "receipt_id", "receipt_time", "ref",
            "correlation_id"]
    out = []
    for r in rows:
        d = dict(zip(cols, r[:-1], strict=True))
        d["record"] = json.loads(r[-1])
        out.append(d)
    return out


_DELIVERY_COLS = ["id", "destination", "state", "attempts", "case_no", "idempotency_key", "created_at",
                  "next_attempt_at", "settled_at", "last_error", "remote_id", "kind", "record_key", "system", "version"]


def deliveries_in(conn: Conn, systems: Sequence[str], state: str | None, destination: str | None,
                  case_no: str | None, limit: int, after_id: int) -> list[dict[str, Any]]:
    """Like ``Store.list_deliveries``, only deliveries to one of ``systems`` or of records from one of them."""
    to_cond, to_args = _in("o.destination", systems)
    from_cond, from_args = _in("r.system", systems)
    where, params = ["o.id > ?", f"({to_cond} OR {from_cond})"], [after_id, *to_args, *from_args]
    for col, val in (("o.state", state), ("o.destination", destination), ("o.case_no", case_no)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    rows = conn.execute(
        "SELECT o.id, o.destination, o.state, o.attempts, o.case_no, o.idem_key, o.created_at, o.next_attempt_at,"
        " o.settled_at, o.last_error, o.remote_id, r.kind, r.record_key, r.system, r.version"
        f" FROM outbox o JOIN records r ON r.id = o.record_id WHERE {' AND '.join(where)} ORDER BY o.id LIMIT ?",
        (*params, limit))
    return [dict(zip(_DELIVERY_COLS, r, strict=True)) for r in rows]


def quarantine_in(conn: Conn, systems: Sequence[str], limit: int, after_id: int) -> list[dict[str, Any]]:
    """Like ``Store.list_quarantine``, only items from ``systems``."""
    cond, args = _in("system", systems)
    rows = conn.execute(f"SELECT id, system, ref, kind, errors, payload, receipt_time FROM quarantine"
                        f" WHERE id > ? AND {cond} ORDER BY id LIMIT ?", (after_id, *args, limit))
    return [{"id": r[0], "system": r[1], "ref": r[2], "kind": r[3], "errors": json.loads(r[4]),
             "payload": json.loads(r[5]) if r[5] else None, "receipt_time": r[6]} for r in rows]


def delivery_parties(conn: Conn, ids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
    """(destination, source system, state) of each existing delivery among ``ids``."""
    out: dict[int, tuple[str, str, str]] = {}
    for i in range(0, len(ids), 500):
        part = list(ids[i:i + 500])
        for row in conn.execute("SELECT o.id, o.destination, r.system, o.state FROM outbox o JOIN records r"
                                f" ON r.id = o.record_id WHERE o.id IN ({','.join('?' * len(part))})", part):
            out[row[0]] = (row[1], row[2], row[3])
    return out


def delivery_ids_in(conn: Conn, systems: Sequence[str], states: Sequence[str], destination: str | None) -> list[int]:
    """Ids of deliveries in ``states`` that concern ``systems`` (as destination or as source)."""
    to_cond, to_args = _in("o.destination", systems)
    from_cond, from_args = _in("r.system", systems)
    st_cond, st_args = _in("o.state", states)
    where, params = [f"({to_cond} OR {from_cond})", st_cond], [*to_args, *from_args, *st_args]
    if destination is not None:
        where.append("o.destination = ?")
        params.append(destination)
    return [r[0] for r in conn.execute("SELECT o.id FROM outbox o JOIN records r ON r.id = o.record_id"
                                       f" WHERE {' AND '.join(where)} ORDER BY o.id", params)]


# --------------------------------------------------------------------------- on a backend


class IdentityStoreMixin:
    """The operations above as coroutines on a store that has ``_read`` and ``_write`` (SqliteStore)."""

    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[Conn], T]) -> T: ...

        async def _write(self, op: Callable[[Conn, ChainWriter], T]) -> T: ...

    # users
    async def get_user(self, name: str) -> UserRow | None:
        return await self._read(lambda c: get_user(c, name))

    async def list_users(self) -> list[UserRow]:
        return await self._read(list_users)

    async def count_users(self, role: str | None = None) -> int:
        return await self._read(lambda c: count_users(c, role))

    async def add_user(self, name: str, role: str, systems: Sequence[str] | None, display_name: str | None,
                       password_hash: str | None, actor: str) -> UserRow:
        return await self._write(lambda c, ch: add_user(c, ch, name, role, systems, display_name, password_hash,
                                                        actor))

    async def set_user_role(self, name: str, role: str, systems: Sequence[str] | None, actor: str) -> UserRow:
        return await self._write(lambda c, ch: set_role(c, ch, name, role, systems, actor))

    async def set_user_password(self, name: str, password_hash: str, actor: str) -> int:
        return await self._write(lambda c, ch: set_password(c, ch, name, password_hash, actor))

    async def rehash_user_password(self, name: str, old_hash: str, new_hash: str) -> None:
        await self._write(lambda c, ch: rehash_password(c, ch, name, old_hash, new_hash))

    async def set_user_disabled(self, name: str, disabled: bool, actor: str) -> int:
        return await self._write(lambda c, ch: set_disabled(c, ch, name, disabled, actor))

    # sessions
    async def create_session(self, id_hash: str, user: str, lifetime: float, remote: str | None,
                             user_agent: str | None, via: str = "console") -> SessionRow:
        return await self._write(lambda c, ch: create_session(c, ch, id_hash, user, lifetime, remote, user_agent,
                                                              via))

    async def find_session(self, id_hash: str) -> tuple[SessionRow, UserRow] | None:
        return await self._read(lambda c: find_session(c, id_hash))

    async def touch_session(self, id_hash: str, now: float) -> None:
        await self._write(lambda c, ch: touch_session(c, ch, id_hash, now))

    async def end_session(self, id_hash: str, reason: str) -> bool:
        return await self._write(lambda c, ch: end_session(c, ch, id_hash, reason))

    async def count_sessions(self, user: str) -> int:
        return await self._read(lambda c: count_sessions(c, user))

    # tokens
    async def create_token(self, token_id: str, secret_hash: str, user: str, label: str, expires_at: float,
                           actor: str) -> TokenRow:
        return await self._write(lambda c, ch: create_token(c, ch, token_id, secret_hash, user, label, expires_at,
                                                            actor))

    async def find_token(self, token_id: str) -> tuple[TokenRow, UserRow] | None:
        return await self._read(lambda c: find_token(c, token_id))

    async def list_tokens(self, user: str | None = None) -> list[TokenRow]:
        return await self._read(lambda c: list_tokens(c, user))

    async def revoke_token(self, token_id: str, actor: str) -> TokenRow:
        return await self._write(lambda c, ch: revoke_token(c, ch, token_id, actor))

    async def touch_token(self, token_id: str, now: float, remote: str | None) -> None:
        await self._write(lambda c, ch: touch_token(c, ch, token_id, now, remote))

    # reads narrowed to an operator's systems
    async def list_records_in(self, systems: Sequence[str], *, case_no: str | None = None, kind: str | None = None,
                              limit: int = 100, after_id: int = 0) -> list[dict[str, Any]]:
        return await self._read(lambda c: records_in(c, sorted(systems), case_no, kind, limit, after_id))

    async def list_deliveries_in(self, systems: Sequence[str], *, state: str | None = None,
                                 destination: str | None = None, case_no: str | None = None, limit: int = 100,
                                 after_id: int = 0) -> list[dict[str, Any]]:
        return await self._read(lambda c: deliveries_in(c, sorted(systems), state, destination, case_no, limit,
                                                        after_id))

    async def list_quarantine_in(self, systems: Sequence[str], *, limit: int = 100,
                                 after_id: int = 0) -> list[dict[str, Any]]:
        return await self._read(lambda c: quarantine_in(c, sorted(systems), limit, after_id))

    async def delivery_parties(self, ids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
        return await self._read(lambda c: delivery_parties(c, list(ids)))

    async def delivery_ids_in(self, systems: Sequence[str], states: Sequence[str],
                              destination: str | None = None) -> list[int]:
        return await self._read(lambda c: delivery_ids_in(c, sorted(systems), list(states), destination))

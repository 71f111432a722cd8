"""The audit hash chain: how one entry is encoded and linked to the one before it.

This file is the single definition of an entry's bytes; the store writes with it,
the verifier and the offline evidence checker read with it. Keep it dependency-free
beyond ``hashlib`` and ``cryptography`` (for SM3), so the offline verifier can copy
the same rules.

entry hash = H(prev_hash_bytes || canonical_json(body))
body       = {"seq", "at", "action", "system", "kind", "record", "case", "detail"}
canonical  = UTF-8 JSON, keys sorted, no spaces, non-ASCII kept as is
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import orjson

GENESIS = "0" * 64

ACTIONS = frozenset(
    {
        "received",
        "duplicate",
        "superseded",
        "quarantined",
        "routed",
        "delivered",
        "failed",
        "dead_lettered",
        "replayed",
        "reconciled",
        "config_changed",
        "user_action",
        "alert_raised",
        "file_claimed",
        "file_done",
        "file_rejected",
        "gateway_started",
        "archived",
        "counterpart_refused",  # a push refused for who sent it (aggregated: gateway.security.refusals)
        "fields_reencrypted",  # stored personal fields re-encrypted under the active key
        # people (gateway.security): accounts, tokens, sessions, and every unmasked read of personal data
        "user_changed",
        "token_changed",
        "login",
        "logout",
        "login_throttled",
        "unmasked",
        # delivery controls and the circuit breaker (gateway.pipeline.delivery, gateway.store.destinations)
        "destination_paused",
        "destination_resumed",
        "destination_settings",
        "circuit_opened",
        "circuit_closed",
        "alert_acknowledged",  # a person acknowledged a supervision alert in the console (who, role, note)
        # two-way exchange (gateway.exchange): correlation, licence effects, 并联审批, reconciliation
        "case_linked",  # a record tied to its case after it was stored (by its licence or credit code)
        "licence_affected",  # a supervision result suspended or revoked a licence (and so its case)
        "parallel_started",  # a case dispatched at once to every department of a 并联审批 scheme
        "parallel_answered",  # one department's opinion came back
        "parallel_completed",  # every department answered; the combined result went to the hall
        "version_conflict",  # same key and version, different payload, kept under policy keep_first
        "reconciliation",  # one 对账 run and its outcome
        "resent",  # a delivery sent again because reconciliation found the counterpart without it
        # the store itself (gateway.store.backup)
        "store_backup",  # a consistent copy of the store was taken (file name, sha256, audit head)
        "store_restored",  # a backup was put back as the store (what was restored, where the old store went)
        "store_migrated",  # the installation moved to this store from another (gateway store migrate)
    }
)


def _sm3() -> Any:
    from cryptography.hazmat.primitives import hashes

    class _SM3:
        def __init__(self) -> None:
            self._h = hashes.Hash(hashes.SM3())

        def update(self, data: bytes) -> None:
            self._h.update(data)

        def digest(self) -> bytes:
            return self._h.finalize()

    return _SM3()


HASHERS: dict[str, Callable[[], Any]] = {"sha256": hashlib.sha256, "sm3": _sm3}


def canonical(body: dict[str, Any]) -> bytes:
    """The canonical bytes: UTF-8 JSON, keys sorted, no spaces, non-ASCII kept.

    orjson writes them (twenty times faster, on every audit entry); for the values the gateway
    writes its output is byte for byte ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, which stays the fallback for anything orjson refuses (integers beyond
    64 bits, keys that are not strings). Verifiers never re-serialise: they hash stored bytes.
    """
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash: str, body_bytes: bytes, algorithm: str = "sha256") -> str:
    if algorithm == "sha256":  # every entry the store writes: half the cost of the general form below
        h = hashlib.sha256(bytes.fromhex(prev_hash))
        h.update(body_bytes)
        return h.hexdigest()
    h = HASHERS[algorithm]()
    h.update(bytes.fromhex(prev_hash))
    h.update(body_bytes)
    return h.digest().hex()


def make_body(
    seq: int,
    at: str,
    action: str,
    *,
    system: str | None = None,
    kind: str | None = None,
    record: str | None = None,
    case: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": at,
        "action": action,
        "system": system,
        "kind": kind,
        "record": record,
        "case": case,
        "detail": detail or {},
    }


def received_detail(*, ref: str, version: int, receipt: str, payload_hash: str, business_time: str | None,
                    mapping: str, routed_to: Any, correlation_id: str | None) -> dict[str, Any]:
    """The detail of a ``received`` (or ``alert_raised``) entry: one entry says received, mapped and routed."""
    detail = {"ref": ref, "version": version, "receipt": receipt, "payload_hash": payload_hash,
              "business_time": business_time, "mapping": mapping, "routed_to": list(routed_to)}
    if correlation_id:
        detail["correlation_id"] = correlation_id
    return detail


Made = tuple[bytes, bytes]
"""An entry's canonical bytes made ahead, apart from ``action``, ``at`` and ``seq`` (see ``made_fields``)."""


def made_fields(*, system: str | None, kind: str | None, record: str | None, case: str | None,
                detail: dict[str, Any] | None) -> Made | None:
    """The canonical bytes of an entry's other fields, made where the record is prepared (a file's helper).

    The keys sort as action, at, case, detail, kind, record, seq, system, so the body is
    ``{"action":…,"at":…,`` + the first part + ``,"seq":N,`` + the second part + ``}``: the writer adds
    what only it knows, byte for byte what ``canonical(make_body(…))`` gives (tests/test_audit.py
    holds them to it). None where orjson refuses a value: the writer then makes the entry whole.
    """
    try:
        middle = orjson.dumps({"case": case, "detail": detail or {}, "kind": kind, "record": record},
                              option=orjson.OPT_SORT_KEYS)
        system_json = orjson.dumps(system)
    except (TypeError, orjson.JSONEncodeError):
        return None
    return middle[1:-1], b'"system":' + system_json


def made_head(at: str, action: str) -> bytes:
    """The start of an entry's canonical body, ``{"action":…,"at":…,``: one per action and transaction."""
    return b'{"action":' + orjson.dumps(action) + b',"at":' + orjson.dumps(at) + b","


class ChainWriter:
    """Appends entries in memory for one transaction; the store persists the rows it returns.

    The store keeps one ChainWriter per database (single writer), seeded from the
    last stored entry at start-up, and rolls it back if the transaction fails.
    """

    __slots__ = ("algorithm", "seq", "head", "_saved")

    def __init__(self, seq: int, head: str, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self.seq = seq
        self.head = head
        self._saved = (seq, head)

    def begin(self) -> None:
        self._saved = (self.seq, self.head)

    def rollback(self) -> None:
        self.seq, self.head = self._saved

    def append_made(self, head: bytes, made: Made) -> tuple[int, str, bytes]:
        """Chain an entry whose fields were made ahead (``made_head``, ``made_fields``): (seq, hash, body)."""
        seq = self.seq + 1
        body = b"".join((head, made[0], b',"seq":', str(seq).encode(), b",", made[1], b"}"))
        digest = entry_hash(self.head, body, self.algorithm)
        self.seq, self.head = seq, digest
        return seq, digest, body

    def append(self, at: str, action: str, **fields: Any) -> tuple[int, str, str, str, bytes]:
        """Return (seq, at, prev_hash, hash, body_bytes) for the new entry."""
        seq = self.seq + 1
        body = canonical(make_body(seq, at, action, **fields))
        prev = self.head
        digest = entry_hash(prev, body, self.algorithm)
        self.seq, self.head = seq, digest
        return seq, at, prev, digest, body


def hash_constructor(algorithm: str = "sha256") -> Callable[[bytes], Any]:
    """``data -> hash object`` (call ``.digest()``) for ``algorithm``: the cheapest form for hot loops.

    Gives the same digests as ``HASHERS``; SM3 uses OpenSSL through hashlib when it offers it
    (much cheaper per call than a ``cryptography`` Hash object) and falls back to ``cryptography``.
    """
    if algorithm == "sha256":
        return hashlib.sha256
    if algorithm == "sm3":
        if "sm3" in hashlib.algorithms_available:
            try:
                base = hashlib.new("sm3")
            except ValueError:
                pass
            else:
                # Copying a ready hasher skips OpenSSL's per-call algorithm lookup (about 40 % faster).
                def sm3_openssl(data: bytes) -> Any:
                    h = base.copy()
                    h.update(data)
                    return h

                return sm3_openssl

        def sm3(data: bytes) -> Any:
            h = _sm3()
            h.update(data)
            return h

        return sm3
    raise KeyError(f"unknown audit hash algorithm {algorithm!r}; choose one of {sorted(HASHERS)}")


def digest_function(algorithm: str = "sha256") -> Callable[[bytes], bytes]:
    """One-shot ``data -> digest bytes`` for ``algorithm``; see ``hash_constructor``."""
    new = hash_constructor(algorithm)
    return lambda data: new(data).digest()

"""Seals: signed statements over ranges of the audit chain, and the Sealer that makes them as entries arrive.

A seal's statement (canonical JSON, the exact signed bytes) names the range
from_seq..to_seq, the chain hash before it and at its end, an RFC 6962 Merkle root over
the range's entry hashes, and the previous seal's statement hash, so seals form a chain
of their own. The Sealer never holds up exchange: when the signer fails or times out the
statement is stored as a pending seal and signed when the signer is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature

from gateway.audit._scan import check_run
from gateway.audit.chain import canonical, digest_function
from gateway.audit.merkle import merkle_root
from gateway.audit.model import MERKLE_SCHEME, SEAL_TYPE, SealConflict, SealHead, SealRow
from gateway.audit.signers import Signer, can_verify, verify_signature

if TYPE_CHECKING:
    from gateway.store.base import AuditRow

log = logging.getLogger("gateway.audit")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


class SealRefused(Exception):
    """The entries to seal do not chain; sealing them would lend a signature to a broken trail."""


def _now() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


def build_statement(head: SealHead, rows: Sequence[AuditRow], from_seq: int, to_seq: int, algorithm: str,
                    sealed_at: str | None = None) -> tuple[bytes, str]:
    """(statement bytes, statement hash) for seal head.seal+1 over rows from_seq..to_seq.

    Checks first that the rows are exactly from_seq..to_seq and chain on from the last
    seal's head hash; raises SealRefused naming the first broken entry otherwise.
    """
    if not rows or rows[0].seq != from_seq or rows[-1].seq != to_seq or len(rows) != to_seq - from_seq + 1:
        have = f"{rows[0].seq}..{rows[-1].seq} ({len(rows)} rows)" if rows else "none"
        raise SealRefused(f"cannot seal entries {from_seq}..{to_seq}: the store returned {have}; "
                          "run `gateway audit verify` to find the gap")
    digest = digest_function(algorithm)
    good, problem = check_run(from_seq, bytes.fromhex(head.head_hash), [r.hash for r in rows],
                              [r.body for r in rows], algorithm)
    if problem is not None:
        raise SealRefused(f"cannot seal entries {from_seq}..{to_seq}: {problem}; run `gateway audit verify`")
    statement = canonical({
        "type": SEAL_TYPE,
        "seal": head.seal + 1,
        "from_seq": from_seq,
        "to_seq": to_seq,
        "count": to_seq - from_seq + 1,
        "algorithm": algorithm,
        "merkle": MERKLE_SCHEME,
        "merkle_root": merkle_root(good, algorithm).hex(),
        "prev_hash": head.head_hash,
        "head_hash": rows[-1].hash,
        "prev_seal": head.statement_hash,
        "first_at": json.loads(rows[0].body).get("at"),
        "last_at": json.loads(rows[-1].body).get("at"),
        "sealed_at": sealed_at or _now(),
    })
    return statement, digest(statement).hex()


@dataclass(slots=True)
class SealerStatus:
    last_seal: int
    pending: int
    last_error: str | None
    signing_available: bool


class Sealer:
    """Seals every ``every_entries`` entries or ``every_seconds`` seconds, and signs pending seals.

    ``await sealer.run(stopping)`` until the event is set (then it seals what is left, once);
    ``await sealer.seal_now()`` seals everything up to the head at once. Both are safe to
    run beside each other and beside a sealer in another process (seal numbers are
    checked at insert; the loser simply re-reads).
    """

    def __init__(
        self,
        store: Any,
        signer: Signer | None,
        *,
        every_entries: int = 10_000,
        every_seconds: float = 300.0,
        max_entries: int = 50_000,
        sign_timeout: float = 10.0,
        retry_initial: float = 2.0,
        retry_max: float = 300.0,
        poll_seconds: float = 1.0,
    ) -> None:
        if every_entries < 1 or max_entries < 1:
            raise ValueError("every_entries and max_entries must be at least 1")
        self.store = store
        self.signer = signer
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self.max_entries = max_entries
        self.sign_timeout = sign_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.poll_seconds = poll_seconds
        self.last_error: str | None = None
        self.last_seal = 0
        self.pending = 0
        self._lock = asyncio.Lock()
        self._last_seal_at = time.monotonic()
        self._retry_delay = retry_initial
        self._next_sign_at = 0.0

    def status(self) -> SealerStatus:
        return SealerStatus(self.last_seal, self.pending, self.last_error, self.last_error is None)

    # ------------------------------------------------------------------ sealing

    async def _seal_once(self) -> SealRow | None:
        algorithm = self.store.audit_algorithm
        for _ in range(1000):  # each conflict means another sealer advanced the head, so this ends
            head: SealHead = await self.store.audit_seal_head()
            last_seq = (await self.store.audit_head())[0]
            if last_seq <= head.to_seq:
                return None
            from_seq, to_seq = head.to_seq + 1, min(last_seq, head.to_seq + self.max_entries)
            rows = await self.store.audit_range(from_seq, to_seq)
            statement, statement_hash = await asyncio.to_thread(build_statement, head, rows, from_seq, to_seq,
                                                                algorithm)
            try:
                row: SealRow = await self.store.add_seal(head.seal + 1, from_seq, to_seq, statement, statement_hash)
            except SealConflict:
                continue  # another sealer got there first: re-read the head
            self.last_seal = row.seal
            self.pending += 1
            log.info("audit seal %d over entries %d..%d made (pending signature)", row.seal, from_seq, to_seq)
            return row
        raise SealConflict("another sealer keeps sealing at the same time; giving up this round")

    async def seal_now(self) -> list[SealRow]:
        """Seal every unsealed entry (in ranges of at most ``max_entries``) and try to sign all pending seals."""
        made: list[SealRow] = []
        async with self._lock:
            while True:
                row = await self._seal_once()
                if row is None:
                    break
                made.append(row)
            self._last_seal_at = time.monotonic()
            await self._sign_pending()
        return made

    # ------------------------------------------------------------------ signing

    async def _sign_pending(self) -> int:
        if self.signer is None:
            self.pending = len(await self.store.pending_seals(limit=10_000))
            return 0
        signed = 0
        while True:
            batch: list[SealRow] = await self.store.pending_seals(limit=100)
            if not batch:
                self.pending = 0
                self._retry_delay = self.retry_initial
                self.last_error = None
                return signed
            for row in batch:
                try:
                    signature = await asyncio.wait_for(self.signer.sign(row.statement), self.sign_timeout)
                    if can_verify(self.signer.algorithm):
                        verify_signature(self.signer.certificate, self.signer.algorithm, row.statement, signature)
                except asyncio.CancelledError:
                    raise
                except InvalidSignature:
                    return await self._signing_failed(row, "the signer returned a signature that does not verify "
                                                           "against its certificate", signed)
                except Exception as exc:  # any signer failure: keep exchanging, retry later
                    reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
                    return await self._signing_failed(row, reason, signed)
                await self.store.mark_seal_signed(row.seal, signature, self.signer.key_id, self.signer.algorithm,
                                                  self.signer.certificate_pem)
                signed += 1
                self.pending = max(0, self.pending - 1)
                log.info("audit seal %d signed with key %s", row.seal, self.signer.key_id[:16])

    async def _signing_failed(self, row: SealRow, reason: str, signed: int) -> int:
        self.last_error = f"seal {row.seal}: signing failed ({reason}); it stays pending and is retried"
        log.warning("%s in %.0f s", self.last_error, self._retry_delay)
        await self.store.note_seal_failure(row.seal, reason)
        self._next_sign_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self.retry_max, self._retry_delay * 2)
        self.pending = len(await self.store.pending_seals(limit=10_000))
        return signed

    async def sign_pending(self) -> int:
        """Try now to sign every pending seal, oldest first; returns how many were signed."""
        async with self._lock:
            return await self._sign_pending()

    # ------------------------------------------------------------------ the loop

    async def _tick(self) -> None:
        head: SealHead = await self.store.audit_seal_head()
        last_seq = (await self.store.audit_head())[0]
        unsealed = last_seq - head.to_seq
        due = unsealed >= self.every_entries or (
            unsealed > 0 and time.monotonic() - self._last_seal_at >= self.every_seconds)
        async with self._lock:
            if due:
                while (row := await self._seal_once()) is not None:
                    if row.to_seq >= last_seq:
                        break
                self._last_seal_at = time.monotonic()
            if self.pending and time.monotonic() >= self._next_sign_at:
                await self._sign_pending()

    async def run(self, stopping: asyncio.Event) -> None:
        """Seal and sign until ``stopping`` is set; then seal the rest once (a pending seal if signing is down)."""
        self.pending = len(await self.store.pending_seals(limit=10_000))
        self._last_seal_at = time.monotonic()
        while not stopping.is_set():
            try:
                await self._tick()
            except (SealRefused, SealConflict) as exc:
                if str(exc) != self.last_error:  # once per distinct problem, not once per poll
                    log.error("audit sealer: %s", exc)
                self.last_error = str(exc)
            except Exception as exc:  # the sealer must outlive a store hiccup; it retries next poll
                if f"audit sealer: {exc!r}" != self.last_error:
                    log.exception("audit sealer failed; retrying every %.0f s", self.poll_seconds)
                self.last_error = f"audit sealer: {exc!r}"
            try:
                await asyncio.wait_for(stopping.wait(), self.poll_seconds)
            except TimeoutError:
                pass
        try:
            await self.seal_now()
        except (SealRefused, SealConflict) as exc:
            log.error("audit sealer at stop: %s", exc)

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.audit._scan import check_run
from gateway.audit.chain import GENESIS, canonical, digest_function
from gateway.audit.merkle import merkle_root
from gateway.audit.model import MERKLE_SCHEME, SEAL_TYPE, SealConflict, SealHead, SealRow
from gateway.audit.signers import Signer, can_verify, verify_signature
from gateway.audit.witness import WitnessLog, made_line, signed_line

if TYPE_CHECKING:
    from gateway.store.base import AuditRow

log = logging.getLogger("gateway.audit")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


class SealRefused(Exception):
    """The entries to seal do not chain; sealing them would lend a signature to a broken trail."""


def _now() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


def build_statement(head: SealHead, rows: Sequence[AuditRow], from_seq: int, to_seq: int, algorithm: str,
                    sealed_at: str | None = None, seal_type: str = SEAL_TYPE) -> tuple[bytes, str]:
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
        "type": seal_type,
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


def _statement(row: SealRow) -> dict[str, Any]:
    try:
        st = json.loads(row.statement)
    except (ValueError, UnicodeDecodeError):
        st = None
    if not isinstance(st, dict):
        raise SealRefused(f"seal {row.seal}: its statement is not a JSON object")
    return st


@dataclass(slots=True)
class SealerStatus:
    last_seal: int
    pending: int
    last_error: str | None
    signing_available: bool
    refused: str | None = None  # set when the sealer found the trail tampered with and stopped signing


class Sealer:
    """Seals every ``every_entries`` entries or ``every_seconds`` seconds, and signs pending seals.

    ``await sealer.run(stopping)`` until the event is set (then it seals what is left, once);
    ``await sealer.seal_now()`` seals everything up to the head at once. Both are safe to
    run beside each other and beside a sealer in another process (seal numbers are
    checked at insert; the loser simply re-reads).

    Before it signs anything the sealer re-checks the trail from the last signed seal: the
    entries under every pending seal chain on from it, the statements match them, and the
    store still holds every seal the witness saw, unchanged and signed where it was signed.
    When that fails it refuses: it signs nothing more, calls ``on_alarm`` once per distinct
    problem (the gateway raises an alert record), and leaves exchange running.
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
        witness: WitnessLog | None = None,
        trusted: Mapping[str, x509.Certificate] | None = None,
        on_alarm: Callable[[str], Awaitable[None]] | None = None,
        on_signed: Callable[[SealRow], Awaitable[None]] | None = None,
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
        self.witness = witness
        self.trusted = dict(trusted or {})
        if signer is not None:
            self.trusted.setdefault(signer.key_id, signer.certificate)
        self.on_alarm = on_alarm
        self.on_signed = on_signed
        self.last_error: str | None = None
        self.refused: str | None = None
        self.last_seal = 0
        self.pending = 0
        self._lock = asyncio.Lock()
        self._last_seal_at = time.monotonic()
        self._retry_delay = retry_initial
        self._next_sign_at = 0.0
        self._alarmed: set[str] = set()
        # seal -> (the head it was built on, its statement), for seals this sealer made in the current
        # round from entries it had just read and checked: signing them moments later needs no second
        # read of the same entries. Cleared when the round ends, so a seal left pending (the signer
        # down) is checked against the store again before it is signed.
        self._fresh: dict[int, tuple[SealHead, bytes]] = {}

    def status(self) -> SealerStatus:
        return SealerStatus(self.last_seal, self.pending, self.last_error, self.last_error is None, self.refused)

    # ------------------------------------------------------------------ refusing

    async def _refuse(self, problem: str) -> None:
        self.refused = self.last_error = problem
        if problem in self._alarmed:
            return
        self._alarmed.add(problem)
        log.error("audit sealer refuses to seal or sign: %s; exchange goes on. Run `gateway audit verify`.", problem)
        if self.on_alarm is not None:
            try:
                await self.on_alarm(problem)
            except Exception:  # the alarm is best effort; the refusal and the log line stand
                log.exception("audit sealer: raising the alert failed")

    async def check_trail(self) -> None:
        """Raise SealRefused unless the trail since the last signed seal holds together (see the class)."""
        store = self.store
        algorithm = store.audit_algorithm
        h = digest_function(algorithm)
        if self.witness is not None:
            summary = await asyncio.to_thread(self.witness.summary)
            archived = await store.list_archives()
            last_archived = archived[-1].last_seal if archived else 0
            for w in (summary.last_made, summary.last_signed):
                if w is None or w.seal <= last_archived:
                    continue
                rows = await store.list_seals(after=w.seal - 1, limit=1)
                row = rows[0] if rows and rows[0].seal == w.seal else None
                if row is None:
                    raise SealRefused(f"seal {w.seal}, which the witness ({w.where}) saw {w.event}, is missing from "
                                      "the store: the newest history was removed")
                if h(row.statement).hex() != w.statement_hash:
                    raise SealRefused(f"seal {w.seal} differs from the statement the witness ({w.where}) saw: the "
                                      "sealed history was rewritten")
                if w.event == "signed" and row.signature is None:
                    raise SealRefused(f"seal {w.seal} was signed (witness {w.where}) but carries no signature now: "
                                      "the signature was stripped")
        last: SealRow | None = await store.last_signed_seal()
        pending: list[SealRow] = await store.pending_seals(limit=10_000)
        if last is not None:
            cert = self.trusted.get(last.key_id or "")
            if cert is None:
                certs = await store.audit_certificates()
                if last.key_id in certs:
                    cert = x509.load_pem_x509_certificate(certs[last.key_id].encode("ascii"))
            try:
                if cert is None or not last.signature_algorithm or last.signature is None:
                    raise InvalidSignature
                if can_verify(last.signature_algorithm):
                    verify_signature(cert, last.signature_algorithm, last.statement, last.signature)
            except InvalidSignature:
                raise SealRefused(f"seal {last.seal}, the last signed one, does not carry a valid signature") from None
            prev = SealHead(last.seal, last.to_seq, _statement(last).get("head_hash", GENESIS),
                            h(last.statement).hex())
        else:
            prev = SealHead()
            archived = await store.list_archives()
            if archived:
                a = archived[-1]
                prev = SealHead(a.last_seal, a.to_seq, a.last_hash, a.last_seal_hash)
        for row in pending:
            if row.seal <= prev.seal:
                raise SealRefused(f"seal {row.seal} carries no signature although the later seal {prev.seal} is "
                                  "signed: its signature was stripped")
            stored = _statement(row)
            if self._fresh.get(row.seal) == (prev, row.statement):
                prev = SealHead(row.seal, row.to_seq, stored["head_hash"], h(row.statement).hex())
                continue
            rows = await store.audit_range(row.from_seq, row.to_seq)
            expected, _ = await asyncio.to_thread(build_statement, prev, rows, row.from_seq, row.to_seq, algorithm,
                                                  stored.get("sealed_at"), stored.get("type", SEAL_TYPE))
            if expected != row.statement:
                raise SealRefused(f"seal {row.seal} (pending) does not match the entries it covers or does not follow "
                                  f"seal {prev.seal}")
            prev = SealHead(row.seal, row.to_seq, rows[-1].hash, h(row.statement).hex())

    # ------------------------------------------------------------------ sealing

    async def _seal_once(self) -> SealRow | None:
        algorithm = self.store.audit_algorithm
        for _ in range(1000):  # each conflict means another sealer advanced the head, so this ends
            head: SealHead = await self.store.audit_seal_head()
            last_seq = (await self.store.audit_head())[0]
            if last_seq <= head.to_seq or await self._only_seal_records_since(head, last_seq):
                return None
            from_seq, to_seq = head.to_seq + 1, min(last_seq, head.to_seq + self.max_entries)
            rows = await self.store.audit_range(from_seq, to_seq)
            statement, statement_hash = await asyncio.to_thread(build_statement, head, rows, from_seq, to_seq,
                                                                algorithm)
            try:
                row: SealRow = await self.store.add_seal(head.seal + 1, from_seq, to_seq, statement, statement_hash)
            except SealConflict:
                continue  # another sealer got there first: re-read the head
            self._fresh[row.seal] = (head, statement)
            if self.witness is not None:
                await asyncio.to_thread(self.witness.append, made_line(row, statement_hash))
            self.last_seal = row.seal
            self.pending += 1
            log.info("audit seal %d over entries %d..%d made (pending signature)", row.seal, from_seq, to_seq)
            return row
        raise SealConflict("another sealer keeps sealing at the same time; giving up this round")

    async def _only_seal_records_since(self, head: SealHead, last_seq: int) -> bool:
        """True when the unsealed entries are only the chain's record of the last seal (nothing to seal yet).

        Sealing them on their own would make a seal whose record needs a seal in turn, for ever.
        """
        if last_seq - head.to_seq > 2 or last_seq <= head.to_seq:
            return False
        rows = await self.store.audit_range(head.to_seq + 1, last_seq)
        return all(r.body.startswith((b'{"action":"seal_made"', b'{"action":"seal_signed"')) for r in rows)

    async def seal_now(self) -> list[SealRow]:
        """Seal every unsealed entry (in ranges of at most ``max_entries``) and try to sign all pending seals."""
        made: list[SealRow] = []
        async with self._lock:
            if self.refused:
                raise SealRefused(self.refused)
            # Before anything new is sealed and written to the witness: a store put back from a copy by
            # hand would otherwise get a seal of its own numbered like one the witness already holds.
            await self.check_trail()
            try:
                while True:
                    row = await self._seal_once()
                    if row is None:
                        break
                    made.append(row)
                self._last_seal_at = time.monotonic()
                await self._sign_pending()
            finally:
                self._fresh.clear()
        return made

    # ------------------------------------------------------------------ signing

    async def _sign_pending(self) -> int:
        if self.signer is None:
            self.pending = len(await self.store.pending_seals(limit=10_000))
            return 0
        batch: list[SealRow] = await self.store.pending_seals(limit=100)
        if not batch:
            self.pending = 0
            self._retry_delay = self.retry_initial
            self.last_error = None
            return 0
        await self.check_trail()  # raises SealRefused: never lend a signature to a trail that does not hold
        signed = 0
        while batch:
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
                if await self.store.mark_seal_signed(row.seal, signature, self.signer.key_id, self.signer.algorithm,
                                                     self.signer.certificate_pem):
                    row.signature, row.key_id = signature, self.signer.key_id
                    row.signature_algorithm = self.signer.algorithm
                    if self.witness is not None:
                        await asyncio.to_thread(self.witness.append, signed_line(row, row.statement_hash))
                    if self.on_signed is not None:
                        try:
                            await self.on_signed(row)
                        except Exception:  # delivery of the witness copy is retried from the outbox, or next start
                            log.exception("audit seal %d: handing it to the witness destinations failed", row.seal)
                    signed += 1
                    log.info("audit seal %d signed with key %s", row.seal, self.signer.key_id[:16])
                self.pending = max(0, self.pending - 1)
            batch = await self.store.pending_seals(limit=100)
        self.pending = 0
        self._retry_delay = self.retry_initial
        self.last_error = None
        return signed

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
            if self.refused:
                raise SealRefused(self.refused)
            return await self._sign_pending()

    # ------------------------------------------------------------------ the loop

    async def _tick(self) -> None:
        head: SealHead = await self.store.audit_seal_head()
        last_seq = (await self.store.audit_head())[0]
        unsealed = last_seq - head.to_seq
        due = unsealed >= self.every_entries or (
            unsealed > 0 and time.monotonic() - self._last_seal_at >= self.every_seconds)
        async with self._lock:
            try:
                if due:
                    while (row := await self._seal_once()) is not None:
                        if row.to_seq >= last_seq:
                            break
                    self._last_seal_at = time.monotonic()
                if self.pending and time.monotonic() >= self._next_sign_at:
                    await self._sign_pending()
            finally:
                self._fresh.clear()

    async def run(self, stopping: asyncio.Event) -> None:
        """Seal and sign until ``stopping`` is set; then seal the rest once (a pending seal if signing is down).

        A refusal (the trail does not hold) stops sealing and signing for the rest of the run;
        exchange goes on, and the alarm has been raised.
        """
        self.pending = len(await self.store.pending_seals(limit=10_000))
        self._last_seal_at = time.monotonic()
        try:
            await self.check_trail()
        except SealRefused as exc:
            await self._refuse(str(exc))
        while not stopping.is_set():
            if self.refused is None:
                try:
                    await self._tick()
                except SealRefused as exc:
                    await self._refuse(str(exc))
                except SealConflict as exc:
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
        if self.refused is None:
            try:
                await self.seal_now()
            except (SealRefused, SealConflict) as exc:
                log.error("audit sealer at stop: %s", exc)

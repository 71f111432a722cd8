"""The file-drop Source: claim complete files from a drop folder, ingest them in batches, file them away.

Layout under the configured ``path`` (the drop root)::

    <root>/X.xml                       dropped by the counterpart (the inbox is the root itself)
    <root>/processing/<instance>/C     claimed by this gateway, C = "<UTC timestamp>-X.xml"
    <root>/done/C                      every item of C committed
    <root>/error/C, error/C.error.txt  C could not be read at all, and why

Why each step is safe if the process is killed at any instant:

1. Scanning only reads the folder.  A file is taken only when it is complete (renamed
   from a temporary name, or its marker exists) and its size and modification time
   stayed unchanged for ``stable_for``.
2. The claim is one ``rename`` inside one file system: atomic.  After a crash the file is
   either still in the inbox (it is claimed again) or in ``processing/<instance>/`` (it
   is resumed at start).  When two gateways race for one file only one rename succeeds;
   each resumes only its own ``processing/<instance>/``, so neither takes over a file the
   other is still reading.
3. With markers, the marker is removed just after the claim (so the sender may deliver
   the next file of the same name at once).  A crash between leaves a stale marker next
   to no file; it is removed when the claim is resumed.
4. Items are committed in batches, each with the cursor ``filedrop:<system>:<C>`` =
   items consumed so far, in the same transaction.  The cursor therefore never runs
   ahead of or behind the committed items.  On resume the reader skips exactly that
   many items (readers are deterministic) and continues: nothing lost, nothing
   committed twice.
5. The file moves to ``done/`` only after the last batch committed.  A crash before the
   move leaves it in ``processing/``; the resume finds nothing left to ingest and moves it.
6. A file that cannot be read gets its report written (temporary name, then rename)
   before it is moved to ``error/``; a crash between the two is redone on resume.
7. Each rename is followed by an fsync of the folder.  Should a power loss still undo a
   claim, the file is claimed again under a new name with no cursor, and the core's
   business-key idempotency recognises the re-sent records as duplicates.

A store outage (``StoreUnavailable``: nothing was committed) leaves the file in
``processing/`` and retries it later with a growing pause, while other files go on, for
as long as the outage lasts. Any other failure (a reader that crashed, a helper process
that died on the file) is retried ``max_attempts`` times and then the file goes to
``error/`` with a report: a file always leaves ``processing/``, never retried for ever.
Items the gateway could read but not accept are not failures of the file: they are
quarantined one by one and the file goes to ``done/``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.adapters import (
    FileUnreadable,
    SourceContext,
    StoreUnavailable,
    correlation_scope,
    current_correlation_id,
    mask_personal_text,
    new_correlation_id,
)

from ._config import FiledropConfig
from ._fs import fsync_dir, write_atomic

TEMP_PREFIXES = (".", "~")
TEMP_SUFFIXES = (".tmp", ".part")

_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_STAMP_LENGTH = len(datetime(2000, 1, 1, tzinfo=UTC).strftime(_STAMP_FORMAT))
_RETRY_MAX = 60.0


def claimed_name(original: str, now: datetime | None = None) -> str:
    """``<UTC timestamp>-<original name>``: unique, sortable by claim time, and reversible."""
    stamp = (now or datetime.now(UTC)).strftime(_STAMP_FORMAT)
    return f"{stamp}-{original}"


def original_name(claimed: str) -> str:
    """The name the counterpart gave the file, from a name made by :func:`claimed_name`."""
    if len(claimed) > _STAMP_LENGTH and claimed[_STAMP_LENGTH] == "-":
        return claimed[_STAMP_LENGTH + 1 :]
    return claimed


def is_temporary(name: str) -> bool:
    """Names a sender uses while still writing (``*.tmp``, ``*.part``, ``.*``, ``~*``)."""
    return name.startswith(TEMP_PREFIXES) or name.lower().endswith(TEMP_SUFFIXES)


@dataclass
class _Watch:
    signature: tuple[int, int]  # (size, mtime_ns)
    since: float  # monotonic time the signature was first seen


@dataclass
class FileStats:
    """Counters a test or the console can read; they are not persisted."""

    claimed: int = 0
    done: int = 0
    failed: int = 0
    items: int = 0
    ingest_failures: int = 0
    last_error: str | None = None
    retry_at: dict[str, float] = field(default_factory=dict)


class FiledropSource:
    """Watches one drop folder for one counterpart system (see the module docstring for the layout)."""

    def __init__(self, system: str, config: FiledropConfig) -> None:
        self.system = system
        self.config = config
        self.root = Path(config.path)
        self.processing = self.root / "processing" / config.instance
        self.done = self.root / "done"
        self.error = self.root / "error"
        self.stats = FileStats()
        self._watch: dict[str, _Watch] = {}
        self._unclaimable: dict[str, tuple[int, int]] = {}
        self._failures: dict[str, int] = {}  # failures that count towards max_attempts, per claimed file
        self._outages: dict[str, int] = {}  # store outages in a row, per claimed file: only the pause grows
        self._root_missing_logged = False

    # ------------------------------------------------------------------ the loop

    async def run(self, ctx: SourceContext) -> None:
        """Resume this instance's claims, then scan, claim and ingest until ``ctx.stopping`` is set."""
        while not await asyncio.to_thread(self._prepare, ctx):
            # A drop folder on a network mount may appear later; creating it here would watch the
            # wrong (local) folder, so wait for it instead.
            if await _stopped(ctx, self.config.poll_interval):
                return
        while not ctx.stopping.is_set():
            for claimed in await asyncio.to_thread(self._claimed_files):
                if ctx.stopping.is_set():
                    return
                if self.stats.retry_at.get(claimed, 0.0) <= time.monotonic():
                    await self._process(ctx, claimed)
            for name in await asyncio.to_thread(self._ready_files, ctx):
                if ctx.stopping.is_set():
                    return
                claimed = await asyncio.to_thread(self._claim, ctx, name)
                if claimed is not None:
                    await self._process(ctx, claimed)
            if await _stopped(ctx, self.config.poll_interval):
                return

    def _prepare(self, ctx: SourceContext) -> bool:
        """Create the working folders and clean up after a crash; False while the drop root is missing."""
        if not self.root.is_dir():
            if not self._root_missing_logged:
                ctx.log.error(
                    "%s: drop folder %s does not exist (not mounted?); waiting for it", self.system, self.root
                )
                self._root_missing_logged = True
            return False
        for folder in (self.processing, self.done, self.error):
            folder.mkdir(parents=True, exist_ok=True)
        claims = self._claimed_files()
        if claims:
            ctx.log.info("%s: resuming %d claimed file(s) in %s", self.system, len(claims), self.processing)
        if self.config.completion == "marker":
            # A crash between claim and marker removal leaves the marker behind (step 3).
            for claimed in claims:
                original = original_name(claimed)
                marker = self.root / (original + self.config.marker_suffix)
                if marker.exists() and not (self.root / original).exists():
                    marker.unlink(missing_ok=True)
        return True

    def _claimed_files(self) -> list[str]:
        try:
            entries = list(os.scandir(self.processing))
        except FileNotFoundError:
            return []
        return sorted(
            e.name for e in entries if e.is_file(follow_symlinks=False) and not is_temporary(e.name)
        )

    # ------------------------------------------------------------------ scanning

    def _wanted(self, name: str) -> bool:
        lowered = name.lower()
        if is_temporary(name) or lowered.endswith(self.config.marker_suffix.lower()):
            return False
        # Case-insensitive: Windows exports arrive as X.XML as often as x.xml.
        return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in self.config.include)

    def _ready_files(self, ctx: SourceContext) -> list[str]:
        """Complete, stable files in the inbox, oldest first."""
        now = time.monotonic()
        try:
            entries = list(os.scandir(self.root))
        except OSError as exc:
            ctx.log.warning("%s: cannot list drop folder %s: %s", self.system, self.root, exc.strerror or exc)
            return []
        names = {entry.name for entry in entries}
        ready: list[tuple[int, str]] = []
        present: set[str] = set()
        for entry in entries:
            # Symlinks are not followed: a link in a drop folder could point anywhere.
            if not entry.is_file(follow_symlinks=False) or not self._wanted(entry.name):
                continue
            if self.config.completion == "marker" and entry.name + self.config.marker_suffix not in names:
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            present.add(entry.name)
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._unclaimable.get(entry.name) == signature:
                continue  # claiming failed and the file has not changed since; said so once already
            watch = self._watch.get(entry.name)
            if watch is None or watch.signature != signature:
                self._watch[entry.name] = watch = _Watch(signature, now)
                if self.config.stable_for > 0:
                    continue
            if now - watch.since >= self.config.stable_for:
                ready.append((stat.st_mtime_ns, entry.name))
        self._watch = {name: watch for name, watch in self._watch.items() if name in present}
        self._unclaimable = {name: sig for name, sig in self._unclaimable.items() if name in present}
        return [name for _, name in sorted(ready)]

    # ------------------------------------------------------------------ moves

    def _claim(self, ctx: SourceContext, name: str) -> str | None:
        claimed = claimed_name(name)
        try:
            os.rename(self.root / name, self.processing / claimed)
        except FileNotFoundError:
            # Another gateway claimed it first, or the sender took it back.
            ctx.log.debug("%s: %s vanished before it could be claimed", self.system, name)
            self._watch.pop(name, None)
            return None
        except OSError as exc:
            # No permission on the drop folder, a name too long for the timestamp prefix …: the file
            # stays where it is and is tried again once it changes.
            watch = self._watch.pop(name, None)
            if watch is not None:
                self._unclaimable[name] = watch.signature
            ctx.log.error(
                "%s: cannot claim %s from %s: %s; it stays in the drop folder",
                self.system,
                name,
                self.root,
                exc.strerror or exc,
            )
            return None
        fsync_dir(self.processing)
        fsync_dir(self.root)
        self._watch.pop(name, None)
        if self.config.completion == "marker":
            (self.root / (name + self.config.marker_suffix)).unlink(missing_ok=True)
        self.stats.claimed += 1
        ctx.log.info("%s: claimed %s as %s", self.system, name, claimed)
        return claimed

    def _finish(self, claimed: str) -> None:
        os.rename(self.processing / claimed, self.done / claimed)
        fsync_dir(self.done)
        fsync_dir(self.processing)

    def _fail(self, claimed: str, reason: str, committed: int) -> None:
        moment = datetime.now().astimezone().isoformat(timespec="seconds")
        report = (
            f"system: {self.system}\n"
            f"file: {original_name(claimed)}\n"
            f"claimed as: {claimed}\n"
            f"time: {moment}\n"
            f"reason: {reason}\n"
            f"items committed before the failure: {committed}\n"
            f"what to do: correct the file (or input settings of the mapping for {self.system}) and drop it "
            f"into {self.root} again; this copy stays here for inspection.\n"
        )
        # People read (and forward) reports: ID and mobile numbers leave masked, in file names too.
        write_atomic(self.error / f"{claimed}.error.txt", mask_personal_text(report).encode("utf-8"))
        os.rename(self.processing / claimed, self.error / claimed)
        fsync_dir(self.error)
        fsync_dir(self.processing)

    # ------------------------------------------------------------------ one file

    async def _process(self, ctx: SourceContext, claimed: str) -> None:
        """Ingest one claimed file under its correlation id: one per claim, the same when it is resumed."""
        with correlation_scope(new_correlation_id(f"filedrop\x1f{self.system}\x1f{claimed}")):
            await self._process_file(ctx, claimed)

    async def _process_file(self, ctx: SourceContext, claimed: str) -> None:
        """Ingest one claimed file from its cursor to the end, then move it to done/ (or error/)."""
        path = self.processing / claimed
        original = original_name(claimed)
        cursor = f"filedrop:{self.system}:{claimed}"
        try:
            stored = await ctx.get_cursor(cursor)
        except Exception as exc:  # the store, not the file
            self._postpone(ctx, claimed, exc, counts=False)
            return
        committed = int(stored) if stored else 0
        # The audit trail cannot be masked afterwards: a file name carrying an ID number enters it masked.
        shown, shown_claimed = mask_personal_text(original), mask_personal_text(claimed)
        cid = current_correlation_id()  # in the file's entries too: they and its records name the same id
        try:
            if stored is None:
                # The trail says which file arrived, byte for byte, before any of its records.
                size, digest = await asyncio.to_thread(_fingerprint, path)
                await ctx.audit("file_claimed", {"file": shown, "claimed_as": shown_claimed, "bytes": size,
                                                 "sha256": digest, "correlation_id": cid})
            result = await ctx.ingest_file(path, ref_prefix=original, cursor=cursor, batch=self.config.batch_size)
        except FileUnreadable as exc:
            # The file's fault (refused, unreadable, unknown format): file it under error/.
            reason = mask_personal_text(exc.reason)  # it may quote the file's name or content
            try:
                await ctx.audit("file_rejected", {"file": shown, "claimed_as": shown_claimed, "reason": reason,
                                                  "items_committed": committed, "correlation_id": cid})
            except Exception as audit_exc:
                self._postpone(ctx, claimed, audit_exc, counts=False)
                return
            await asyncio.to_thread(self._fail, claimed, reason, committed)
            self._failed(ctx, original, exc)
            return
        except StoreUnavailable as exc:
            self._postpone(ctx, claimed, exc, counts=False)
            return
        except Exception as exc:
            if self._failures.get(claimed, 0) + 1 >= self.config.max_attempts:
                await self._give_up(ctx, claimed, original, committed, exc)
            else:
                self._postpone(ctx, claimed, exc)
            return
        consumed = result.consumed
        self.stats.items += consumed - committed
        if not result.complete:
            return  # stopping: the cursor holds our place; the next start resumes here
        try:
            # Recorded before the move: a crash in between repeats the entry, never loses it.
            await ctx.audit("file_done", {"file": shown, "claimed_as": shown_claimed, "items": consumed,
                                          "outcomes": result.outcomes, "correlation_id": cid})
        except Exception as exc:  # the store, not the file
            self._postpone(ctx, claimed, exc, counts=False)
            return
        await asyncio.to_thread(self._finish, claimed)
        self._failures.pop(claimed, None)
        self._outages.pop(claimed, None)
        self.stats.retry_at.pop(claimed, None)
        self.stats.done += 1
        ctx.log.info("%s: %s done, %d items (%s)", self.system, original, consumed, claimed,
                     extra={"system": self.system, "file": shown, "items": consumed, "outcomes": result.outcomes})

    async def _give_up(self, ctx: SourceContext, claimed: str, original: str, committed: int,
                       exc: Exception) -> None:
        """The file failed ``max_attempts`` times for a reason that is not a store outage: file it under error/."""
        attempts = self._failures.get(claimed, 0) + 1
        # The report and the audit trail carry no personal data in full: the reason may quote a value.
        reason = mask_personal_text(f"failed {attempts} times (max_attempts = {self.config.max_attempts}), last: "
                                    f"{type(exc).__name__}: {_reason(exc)}")
        try:
            await ctx.audit("file_rejected", {"file": mask_personal_text(original),
                                              "claimed_as": mask_personal_text(claimed), "reason": reason,
                                              "items_committed": committed,
                                              "correlation_id": current_correlation_id()})
        except Exception as audit_exc:
            self._postpone(ctx, claimed, audit_exc, counts=False)
            return
        await asyncio.to_thread(self._fail, claimed, reason, committed)
        self._failures.pop(claimed, None)
        self.stats.retry_at.pop(claimed, None)
        self._failed(ctx, original, RuntimeError(reason))

    def _failed(self, ctx: SourceContext, original: str, exc: Exception) -> None:
        self.stats.failed += 1
        self.stats.last_error = _reason(exc)
        ctx.log.error("%s: %s moved to error/: %s", self.system, original, _reason(exc))

    def _postpone(self, ctx: SourceContext, claimed: str, exc: Exception, *, counts: bool = True) -> None:
        """Try the file again later; ``counts``: this failure counts towards max_attempts (a store outage does not)."""
        failures = self._failures.get(claimed, 0) + 1 if counts else self._failures.get(claimed, 0)
        self._failures[claimed] = failures
        self._outages[claimed] = 0 if counts else self._outages.get(claimed, 0) + 1
        pause = min(self.config.poll_interval * 2 ** (max(failures, self._outages[claimed]) - 1), _RETRY_MAX)
        self.stats.retry_at[claimed] = time.monotonic() + pause
        self.stats.ingest_failures += 1
        self.stats.last_error = f"ingest failed: {exc}"  # get_cursor failures land here too
        why = ("the store is unavailable; retried for as long as that lasts" if not counts
               else f"attempt {failures} of {self.config.max_attempts} before it goes to error/")
        ctx.log.warning("%s: ingesting %s failed (%s); it stays in processing/ and is retried in %.0fs (%s)",
                        self.system, claimed, exc, pause, why)


async def _stopped(ctx: SourceContext, seconds: float) -> bool:
    """Wait up to ``seconds``; True as soon as the gateway is stopping."""
    try:
        await asyncio.wait_for(ctx.stopping.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def _fingerprint(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read the file: {exc.strerror}"
    text = str(exc) or type(exc).__name__
    return mask_personal_text(text)

"""Ingesting a whole file: read, map and prepare in a helper process while this process commits.

Reading XML and mapping are pure Python work that holds the GIL; committing is the
store's writer thread. On a 2-core machine a large file goes about twice as fast
when a spawned helper process reads and prepares batch k+1 while the main process
commits batch k. The helper sends prepared batches over a pipe; a full pipe blocks
it, so at most about two batches are in memory. Commits stay in file order, each
with the cursor that says how many items are behind it, so a crash at any moment
resumes exactly after the last committed batch. A helper whose parent died gets a
broken pipe at its next send and exits.

Small files are read in-process: spawning a helper costs more than it saves.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gateway.adapters import FileIngestResult, FileUnreadable, RawRecord
from gateway.pipeline.ingest import Ingestor
from gateway.pipeline.router import Router, Rule
from gateway.store import AcceptItem, QuarantineItem

PARALLEL_MIN_BYTES = 8 * 1024 * 1024
Prepared = tuple[int, int, list[AcceptItem], list[QuarantineItem]]  # items consumed, byte position, the batch


def read_position(path: Path) -> int | None:
    """How far this process has read ``path``: the offset of its open file (Linux /proc), else None.

    The readers stream the file themselves; asking the kernel where their file stands gives
    a progress figure in bytes without changing them.
    """
    try:
        target = os.path.realpath(path)
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") != target:
                    continue
                with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
                    for line in info:
                        if line.startswith("pos:"):
                            return int(line.split()[1])
            except OSError:  # closed meanwhile
                continue
    except OSError:
        return None
    return None


def raw_batches(
    path: Path, system: str, options: dict[str, Any], ref_prefix: str, skip: int, batch: int
) -> Iterator[tuple[int, int, list[RawRecord]]]:
    """(items consumed so far, bytes read so far, RawRecords) per batch after skipping ``skip`` items.

    FileUnreadable for the file's own faults. Bytes read come from the kernel where it tells,
    else from the items' own bytes (an estimate).
    """
    from gateway.formats import FileRefused, read_items

    consumed = 0
    estimate = 0
    pending: list[RawRecord] = []
    try:
        for item in read_items(path, options):
            consumed += 1
            estimate += len(item.raw) + 1 if item.raw else 0
            if consumed <= skip:
                continue
            pending.append(RawRecord(system, item.payload or {}, f"{ref_prefix} {item.ref}", item.raw, item.error,
                                     item.field, item.rule))
            if len(pending) >= batch:
                yield consumed, read_position(path) or estimate, pending
                pending = []
    except FileRefused as exc:
        raise FileUnreadable(str(exc)) from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise FileUnreadable(f"{path.name}: cannot be read: {exc}") from exc
    except RecursionError:
        # The reader cannot get past this item, and would not on any later try either.
        raise FileUnreadable(f"{path.name}: item {consumed + 1} is nested too deeply to be read; the "
                             f"{consumed - skip} items before it were read") from None
    if pending:
        yield consumed, read_position(path) or estimate, pending


def _prepared_batches(
    path: Path, system: str, options: dict[str, Any], ingestor: Ingestor, ref_prefix: str, skip: int, batch: int
) -> Iterator[Prepared]:
    for consumed, position, raws in raw_batches(path, system, options, ref_prefix, skip, batch):
        accepted, quarantined = ingestor.prepare(system, raws)
        yield consumed, position, accepted, quarantined


async def ingest_file_with(ctx: Any, path: Path, *, ref_prefix: str, cursor: str, batch: int = 2000) -> FileIngestResult:
    """``SourceContext.ingest_file`` for any context, on top of its ``ingest`` and ``get_cursor`` (no helper process).

    For hosts and test contexts that implement only the basic calls.
    """
    stored = await ctx.get_cursor(cursor)
    skip = int(stored) if stored else 0
    result = FileIngestResult(consumed=skip, complete=False)
    batches = _OneThread(raw_batches(path, ctx.system, dict(ctx.input_options()), ref_prefix, skip, batch),
                         f"read:{path.name}")
    try:
        while not ctx.stopping.is_set():
            step = await batches.next()
            if step is None:
                result.complete = True
                break
            consumed, _, raws = step
            for outcome in await ctx.ingest(raws, cursor=(cursor, str(consumed))):
                result.outcomes[outcome.status] = result.outcomes.get(outcome.status, 0) + 1
            result.consumed = consumed
    finally:
        batches.close()
    return result


class _OneThread:
    """Runs an iterator on one dedicated thread, handing items over through a small queue.

    lxml parsers keep libxml2 state that must stay on the thread that created it, so a
    file's reader is never advanced from a thread pool's changing threads.
    """

    _END = object()

    def __init__(self, iterator: Iterator[Any], name: str) -> None:
        self._iterator = iterator
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._iterator:
                if not self._put((True, item)):
                    return
            self._put((True, self._END))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((False, exc))
        finally:
            close = getattr(self._iterator, "close", None)
            if close is not None:
                close()

    async def next(self) -> Any | None:
        ok, item = await asyncio.to_thread(self._queue.get)
        if not ok:
            raise item
        return None if item is self._END else item

    def close(self) -> None:
        self._closed.set()


def _worker(conn: Any, path: str, system: str, mapping: Any, rules: Sequence[Rule], options: dict[str, Any],
            ref_prefix: str, skip: int, batch: int, cipher: Any = None) -> None:
    """Helper process: prepare batches and send them; the last message says how it ended.

    ``mapping`` arrives pickled: the InboundMapping compiles its file again here, with the
    source's overrides (gateway.toml ``input`` and ``on_invalid``).
    """
    try:
        ingestor = Ingestor(None, Router(rules), {system: mapping}, cipher=cipher)  # type: ignore[arg-type]
        for prepared in _prepared_batches(Path(path), system, options, ingestor, ref_prefix, skip, batch):
            conn.send(("batch", *prepared))
        conn.send(("done",))
    except (BrokenPipeError, EOFError):
        return  # the parent is gone (stopping, or killed): nothing to report to
    except FileUnreadable as exc:
        conn.send(("unreadable", exc.reason))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


async def ingest_file(
    ingestor: Ingestor,
    system: str,
    path: Path,
    *,
    ref_prefix: str,
    cursor: str,
    skip: int = 0,
    batch: int = 2000,
    stopping: asyncio.Event | None = None,
    parallel: bool | None = None,
    on_batch: Callable[[int, int, dict[str, int]], None] | None = None,
) -> FileIngestResult:
    """Ingest ``path`` for ``system`` from item ``skip`` on; see the module docstring.

    ``on_batch(items consumed, bytes read, outcomes so far)`` after each committed batch.
    """
    mapping = ingestor.mappings.get(system)
    if mapping is None:
        raise KeyError(f"no inbound mapping is configured for system {system!r}")
    options = dict(mapping.input)
    if parallel is None:
        parallel = path.stat().st_size >= PARALLEL_MIN_BYTES
    result = FileIngestResult(consumed=skip, complete=False)

    async def commit(prepared: Prepared) -> None:
        consumed, position, accepted, quarantined = prepared
        for outcome in await ingestor.commit(accepted, quarantined, (cursor, str(consumed))):
            result.outcomes[outcome.status] = result.outcomes.get(outcome.status, 0) + 1
        result.consumed = consumed
        if on_batch is not None:
            on_batch(consumed, position, result.outcomes)

    if not parallel:
        batches = _OneThread(_prepared_batches(path, system, options, ingestor, ref_prefix, skip, batch),
                             f"read:{path.name}")
        try:
            while True:
                if stopping is not None and stopping.is_set():
                    return result
                prepared = await batches.next()
                if prepared is None:
                    result.complete = True
                    return result
                await commit(prepared)
        finally:
            batches.close()

    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_worker, name=f"ingest:{path.name}", daemon=True,
        args=(child, str(path), system, mapping, ingestor.router.rules, options, ref_prefix, skip, batch,
              ingestor.cipher),
    )
    proc.start()
    child.close()
    try:
        while True:
            if stopping is not None and stopping.is_set():
                return result
            try:
                message = await asyncio.to_thread(parent.recv)
            except EOFError:
                raise RuntimeError(f"the helper process reading {path.name} died (exit code "
                                   f"{proc.exitcode})") from None
            tag = message[0]
            if tag == "batch":
                await commit(message[1:])
            elif tag == "done":
                result.complete = True
                return result
            elif tag == "unreadable":
                raise FileUnreadable(message[1])
            else:
                raise RuntimeError(f"reading {path.name} failed in the helper process:\n{message[1]}")
    finally:
        parent.close()
        if proc.is_alive():
            proc.terminate()
        await asyncio.to_thread(proc.join, 5)

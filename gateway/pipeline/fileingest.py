"""Ingesting a whole file: producers read and prepare it, this process commits it in file order.

One path for every file, with the cursor rules in one place (``_consume``): batches are
committed in file order, each with the cursor that counts the items behind it, so a crash
at any moment resumes exactly after the last committed batch.

Who reads and prepares depends on the file:

- a small file: one thread of this process (starting a helper costs more than it saves);
- a large file that cannot be cut (CSV, a JSON document, XML with comments …): one helper
  process reads and prepares it while this process commits — both cores work;
- a large XML or JSON-lines file: ``gateway.formats.split_file`` cuts it into record-aligned
  parts, and two helper processes each read and prepare every other part while this process
  commits the parts in order. The parts are about one batch each, so the helpers take turns
  and neither waits long; the pipes hold at most one batch per helper, so memory stays flat.
  A part that does not parse on its own makes the rest of the file be read whole from there.

Helpers import little (``gateway.pipeline.prepare`` and the readers) and send plain tuples,
not dataclasses: a helper whose parent died gets a broken pipe at its next send and exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from gateway.records import FileIngestResult, FileUnreadable, IngestOutcome, RawRecord

PARALLEL_MIN_BYTES = 8 * 1024 * 1024
STOPPED = -1
HELPERS = 2  # helper processes for a file cut into parts: two cores, and this process commits

# Messages from producers: ("batch", part, consumed, position, accepted, quarantined), ("part", part, consumed),
# ("done",), ("split", part, consumed) when a part did not parse alone, ("unreadable", reason), ("error", text).
Message = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Job:
    """What one producer reads: the whole file from item ``skip`` on, or its parts (skipping inside the first)."""

    path: str
    system: str
    options: dict[str, Any]
    ref_prefix: str
    batch: int
    skip: int
    parts: tuple[Any, ...] = ()  # gateway.formats.Part; empty: the whole file
    prepare: bool = True  # False: hand RawRecords over (a context that prepares and commits itself)
    keep_raw: bool = True
    correlation_id: str | None = None  # the file's: every item carries it


def read_position(path: Path) -> int | None:
    """How far this process has read ``path``: the offset of its open file (Linux /proc), else None."""
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


def _raw_batches(job: _Job, part: Any) -> Iterator[tuple[int, int, list[RawRecord]]]:
    """(items consumed so far, bytes read so far, RawRecords) per batch of ``part`` (None: the whole file).

    A part is read whole before any of it is handed on, and only when it parsed on its own into
    exactly the items the plan counted (``_PartFailed`` otherwise: nothing of it was sent).
    """
    from gateway.formats import FileRefused, read_items

    path = Path(job.path)
    consumed = part.first_item if part is not None else 0
    skip = job.skip
    estimate = part.start if part is not None else 0
    pending: list[RawRecord] = []
    try:
        for item in read_items(path, job.options, part, keep_raw=job.keep_raw):
            if item.rule == "xml_part":
                raise _PartFailed(part.first_item)
            consumed += 1
            if consumed <= skip:
                continue
            pending.append(RawRecord(job.system, item.payload or {}, f"{job.ref_prefix} {item.ref}", item.raw,
                                     item.error, item.field, item.rule, job.correlation_id))
            if part is None and len(pending) >= job.batch:
                estimate += sum(len(r.raw) + 1 for r in pending if r.raw)
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
    if part is not None:
        if consumed != part.first_item + part.items:
            raise _PartFailed(part.first_item)  # the plan miscounted (a tag in a comment, a prefix …)
        first = consumed - len(pending)
        for i in range(0, len(pending), job.batch):
            chunk = pending[i:i + job.batch]
            yield first + i + len(chunk), part.end if i + job.batch >= len(pending) else part.start, chunk
        return
    if pending:
        yield consumed, read_position(path) or estimate, pending


class _PartFailed(Exception):
    def __init__(self, consumed: int) -> None:
        super().__init__(consumed)
        self.consumed = consumed


def _produce(job: _Job, preparer: Any) -> Iterator[Message]:
    """The messages of one producer, in its parts' order; see ``Message``."""
    for part in job.parts or (None,):
        no = part.no if part is not None else 0
        consumed = part.first_item if part is not None else job.skip
        try:
            for consumed, position, raws in _raw_batches(job, part):
                if job.prepare:
                    accepted, quarantined = preparer.prepare(job.system, raws)
                    yield ("batch", no, consumed, position, accepted, quarantined)
                else:
                    yield ("batch", no, consumed, position, raws, None)
        except _PartFailed as failed:
            yield ("split", no, failed.consumed)
            return
        yield ("part", no, part.first_item + part.items if part is not None else consumed)
    yield ("done",)


# lxml's iterparse leaves each part's parser, its context and its document in a reference cycle
# (19 objects, with libxml2's memory behind them), which the collector as _helper sets it reaches
# only after millions of allocations: reading the parts of the 1,000,000-record benchmark file in
# one process, memory grew by 0.5 MB per 100,000 records, and stayed flat with a collection after
# each part. A full collection between parts takes about 1.4 ms; every 16th part, under 0.1 µs a
# record, and no more than 16 parts' parsers wait for it.
_COLLECT_EVERY = 16


def _helper(conn: Any, job: _Job, mapping: Any, rules: Sequence[Any], cipher: Any, renderers: Any) -> None:
    """A helper process: produce and send; the last message says how it ended."""
    from gateway.pipeline.prepare import Preparer
    from gateway.pipeline.router import Router

    # Batch work allocates much and keeps little: collect the young generation rarely, and never
    # walk what was loaded before the first record (the mapping, the code tables).
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    parts = 0
    try:
        preparer = Preparer(Router(rules), {job.system: mapping}, cipher, renderers)
        for message in _produce(job, preparer):
            conn.send(message)
            if message[0] == "part":
                parts += 1
                if parts % _COLLECT_EVERY == 0:
                    gc.collect()  # see _COLLECT_EVERY
    except (BrokenPipeError, EOFError):
        return  # the parent is gone (stopping, or killed): nothing to report to
    except FileUnreadable as exc:
        conn.send(("unreadable", exc.reason))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# The helper's whole program: take the caller's import path, then the job from stdin. Started
# this way, not by multiprocessing's spawn, because spawn re-runs the parent's main script in
# the child (for ``gateway run`` that is the whole CLI: 40 MB more per helper, for nothing).
_HELPER_CODE = ("import sys, json; sys.path[:] = json.loads(sys.stdin.buffer.readline()); "
                "from gateway.pipeline.fileingest import _helper_main; _helper_main(int(sys.argv[1]))")


def _start_helper(args: tuple[Any, ...]) -> tuple[Connection, subprocess.Popen[bytes]]:
    """A helper process running ``_helper(*args)``, and the read end of the pipe it sends on."""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _HELPER_CODE, str(write_fd)], stdin=subprocess.PIPE,
                                pass_fds=(write_fd,), close_fds=True)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    os.close(write_fd)
    conn = Connection(read_fd, writable=False)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(sys.path).encode() + b"\n")
        proc.stdin.write(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL))
        proc.stdin.close()
    except OSError:
        pass  # it died at once: its pipe ends, and the first read says so
    return conn, proc


def _helper_main(write_fd: int) -> None:
    """Entry of a helper process (see ``_HELPER_CODE``)."""
    job, mapping, rules, cipher, renderers = pickle.load(sys.stdin.buffer)
    _helper(Connection(write_fd, readable=False), job, mapping, rules, cipher, renderers)


class _Producer:
    """One producer's messages, from a thread of this process or from a helper process."""

    def __init__(self, job: _Job, *, preparer: Any, process: bool, mapping: Any = None, rules: Sequence[Any] = (),
                 cipher: Any = None, renderers: Any = None, name: str = "ingest") -> None:
        self.job = job
        self._proc: subprocess.Popen[bytes] | None = None
        self._queue: queue.Queue[Message] | None = None
        self._closed = threading.Event()
        self._next: asyncio.Future[Message] | None = None
        if process:
            self._conn, self._proc = _start_helper((job, mapping, tuple(rules), cipher, renderers))
        else:
            # lxml parsers keep libxml2 state that must stay on the thread that created them: one thread.
            self._queue = queue.Queue(maxsize=2)
            threading.Thread(target=self._run, args=(preparer,), name=name, daemon=True).start()

    def _run(self, preparer: Any) -> None:
        try:
            for message in _produce(self.job, preparer):
                if not self._put(message):
                    return
        except FileUnreadable as exc:
            self._put(("unreadable", exc.reason))
        except BaseException:
            self._put(("error", traceback.format_exc()))

    def _put(self, message: Message) -> bool:
        assert self._queue is not None
        while not self._closed.is_set():
            try:
                self._queue.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def prefetch(self) -> None:
        """Start receiving the next message now (while this process commits the last one)."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._receive())

    async def next(self) -> Message:
        if self._next is not None:
            pending, self._next = self._next, None
            return await pending
        return await self._receive()

    async def _receive(self) -> Message:
        if self._queue is not None:
            return await asyncio.to_thread(self._queue.get)
        try:
            return await asyncio.to_thread(self._conn.recv)
        except EOFError:
            assert self._proc is not None
            code = await asyncio.to_thread(self._proc.wait, 5)
            raise RuntimeError(f"the helper process reading {Path(self.job.path).name} died (exit code "
                               f"{code})") from None

    async def close(self) -> None:
        self._closed.set()
        if self._queue is not None:
            try:  # wake a receive that waits on a producer which now stops without a word
                self._queue.put_nowait(("closed",))
            except queue.Full:
                pass  # then the receive has something to take
        if self._next is not None:
            self._next.cancel()
            self._next = None
        if self._proc is not None:
            self._conn.close()
            if self._proc.poll() is None:
                self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait)


Commit = Callable[[Message, tuple[str, str]], Awaitable[list[IngestOutcome]]]


async def _consume(producers: Sequence[_Producer], parts: Sequence[Any], commit: Commit, cursor: str,
                   result: FileIngestResult, stopping: asyncio.Event | None,
                   on_batch: Callable[[int, int, dict[str, int]], None] | None) -> int | None:
    """Commit the producers' batches in file order; None when the file is done, else the item to go on from.

    Part k comes from producer k mod n (the whole file, as one part, from producer 0). Returns the
    count of items committed when a part did not parse alone: the caller reads on from there.
    """
    order = [p.no for p in parts] or [0]
    for index, expected in enumerate(order):
        producer = producers[index % len(producers)]
        while True:
            if stopping is not None and stopping.is_set():
                return STOPPED
            message = await producer.next()
            tag = message[0]
            if tag in ("batch", "part", "split") and message[1] != expected:
                raise RuntimeError(f"reading {Path(producer.job.path).name}: part {message[1]} arrived where part "
                                   f"{expected} was due")
            if tag == "batch":
                _, _, consumed, position, *_ = message
                producer.prefetch()
                for outcome in await commit(message, (cursor, str(consumed))):
                    result.outcomes[outcome.status] = result.outcomes.get(outcome.status, 0) + 1
                result.consumed = consumed
                if on_batch is not None:
                    on_batch(consumed, position, result.outcomes)
            elif tag == "part":
                break
            elif tag == "done":
                return None
            elif tag == "split":
                return result.consumed
            elif tag == "unreadable":
                raise FileUnreadable(message[1])
            else:
                raise RuntimeError(f"reading {Path(producer.job.path).name} failed:\n{message[1]}")
    return None


async def _run(path: Path, system: str, options: dict[str, Any], *, ref_prefix: str, cursor: str, skip: int,
               batch: int, stopping: asyncio.Event | None, parallel: bool | None, commit: Commit,
               on_batch: Callable[[int, int, dict[str, int]], None] | None, preparer: Any = None,
               mapping: Any = None, rules: Sequence[Any] = (), cipher: Any = None,
               correlation_id: str | None = None) -> FileIngestResult:
    from gateway.formats import format_of, split_file
    from gateway.observability import correlation

    # One id for the whole file: the one bound to the task (a file drop binds one per claimed file) or a new one.
    correlation_id = correlation_id or correlation.current() or correlation.new()

    prepare = preparer is not None
    if parallel is None:
        parallel = prepare and path.stat().st_size >= PARALLEL_MIN_BYTES
    # A file drop keeps the whole file: a parsed XML record is hashed as it was parsed, not re-serialised.
    keep_raw = not prepare or format_of(path, options) != "xml"
    result = FileIngestResult(consumed=skip, complete=False)
    plan: list[Any] | None = None
    if parallel:
        plan = await asyncio.to_thread(split_file, path, options, batch)
        if plan is not None:
            plan = [p for p in plan if p.first_item + p.items > skip]  # parts already committed: done
    start = skip
    while True:
        base = _Job(str(path), system, options, ref_prefix, batch, start, (), prepare, keep_raw, correlation_id)
        if plan:
            jobs = [replace(base, parts=tuple(plan[i::HELPERS])) for i in range(min(HELPERS, len(plan)))]
        else:
            jobs = [base]
        producers = [_Producer(job, preparer=preparer, process=parallel, mapping=mapping, rules=rules,
                               cipher=cipher, renderers=preparer.renderers if preparer is not None else None,
                               name=f"ingest:{path.name}:{i}") for i, job in enumerate(jobs)]
        try:
            go_on = await _consume(producers, plan or [], commit, cursor, result, stopping, on_batch)
        finally:
            for producer in producers:
                await producer.close()
        if go_on == STOPPED:
            return result  # stopping: the cursor holds the place
        if go_on is None:
            result.complete = True
            return result
        start, plan = go_on, None  # a part did not parse alone: the rest of the file, read whole


async def ingest_file(
    ingestor: Any,
    system: str,
    path: Path,
    *,
    ref_prefix: str,
    cursor: str,
    skip: int = 0,
    batch: int = 1000,
    stopping: asyncio.Event | None = None,
    parallel: bool | None = None,
    on_batch: Callable[[int, int, dict[str, int]], None] | None = None,
    correlation_id: str | None = None,
) -> FileIngestResult:
    """Ingest ``path`` for ``system`` from item ``skip`` on with ``ingestor`` (a ``gateway.pipeline.ingest.Ingestor``).

    ``on_batch(items consumed, bytes read, outcomes so far)`` after each committed batch. Every record
    of the file carries ``correlation_id`` (default: the one bound to the task, else a new one).
    """
    from gateway.pipeline.ingest import wrap

    mapping = ingestor.mappings.get(system)
    if mapping is None:
        raise KeyError(f"no inbound mapping is configured for system {system!r}")

    async def commit(message: Message, at: tuple[str, str]) -> list[IngestOutcome]:
        accepted, quarantined = wrap(message[4], message[5])
        return await ingestor.commit(accepted, quarantined, at)

    return await _run(path, system, dict(mapping.input), ref_prefix=ref_prefix, cursor=cursor, skip=skip,
                      batch=batch, stopping=stopping, parallel=parallel, commit=commit, on_batch=on_batch,
                      preparer=ingestor.preparer, mapping=mapping, rules=ingestor.router.rules,
                      cipher=ingestor.cipher, correlation_id=correlation_id)


async def ingest_file_with(ctx: Any, path: Path, *, ref_prefix: str, cursor: str, batch: int = 1000) -> FileIngestResult:
    """``SourceContext.ingest_file`` for any context that has ``ingest``, ``get_cursor`` and ``input_options``.

    The same path as :func:`ingest_file`, read in this process, the context committing raw batches
    itself: for hosts and test contexts that implement only the basic calls.
    """
    stored = await ctx.get_cursor(cursor)

    async def commit(message: Message, at: tuple[str, str]) -> list[IngestOutcome]:
        return await ctx.ingest(message[4], cursor=at)

    return await _run(path, ctx.system, dict(ctx.input_options()), ref_prefix=ref_prefix, cursor=cursor,
                      skip=int(stored) if stored else 0, batch=batch, stopping=ctx.stopping, parallel=False,
                      commit=commit, on_batch=None)

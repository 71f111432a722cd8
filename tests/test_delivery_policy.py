"""Delivery policy as a specification: retry until max_age, permanent errors at once, the circuit breaker's
states, destination controls in the store, and what `gateway check` says about max_attempts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.adapters import PermanentError, RetryableError
from gateway.cli import main
from gateway.config import config_from_dict
from gateway.pipeline.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from gateway.pipeline.delivery import DeliveryPolicy, DestinationWorker, delivery_deprecations, policy_for
from gateway.store import AcceptItem, ClaimedDelivery, Settlement


def claimed(*, attempts: int = 0, age: float = 0.0, delivery_id: int = 1) -> ClaimedDelivery:
    return ClaimedDelivery(delivery_id=delivery_id, destination="hall", idempotency_key=f"k{delivery_id}",
                           attempts=attempts, created_at=time.time() - age, record_id=1, kind="case",
                           record_key="A", case_no="C1", system="county", body="{}")


def worker(**policy: object) -> DestinationWorker:
    return DestinationWorker("hall", sink=None, renderer=None, store=None, policy=DeliveryPolicy(**policy))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- retry policy


def test_a_retryable_failure_is_retried_whatever_the_attempt_count_until_max_age() -> None:
    w = worker(max_age=3 * 86400)
    assert w._outcome(claimed(attempts=500, age=2 * 86400), RetryableError("503")).settlement.outcome == "retry"
    dead = w._outcome(claimed(attempts=3, age=3 * 86400 + 1), RetryableError("503"))
    assert dead.settlement.outcome == "dead" and dead.dead_reason == "age"
    assert "max_age" in (dead.settlement.error or "")


def test_a_permanent_error_is_a_dead_letter_at_once_by_default() -> None:
    out = worker()._outcome(claimed(), PermanentError("400 bad record", status=400))
    assert out.settlement.outcome == "dead" and out.settlement.attempt == 1 and out.dead_reason == "permanent"
    assert not out.unwell  # the counterpart answered: it is up


def test_permanent_attempts_gives_a_refused_record_more_tries() -> None:
    w = worker(permanent_attempts=3)
    assert w._outcome(claimed(attempts=1), PermanentError("400")).settlement.outcome == "retry"
    assert w._outcome(claimed(attempts=2), PermanentError("400")).settlement.outcome == "dead"


def test_max_attempts_from_an_older_configuration_still_caps_retryable_attempts() -> None:
    out = worker(max_attempts=12)._outcome(claimed(attempts=11), RetryableError("timeout"))
    assert out.settlement.outcome == "dead" and out.dead_reason == "attempts"
    assert "max_attempts, deprecated" in (out.settlement.error or "")


def test_backoff_never_exceeds_its_cap_and_honours_retry_after() -> None:
    p = DeliveryPolicy(backoff_initial=1.0, backoff_max=10.0)
    assert all(0.5 <= p.backoff(1) <= 1.0 for _ in range(50))
    assert all(p.backoff(30) <= 10.0 for _ in range(50))
    assert p.backoff(1, retry_after=7.0) >= 7.0


# --------------------------------------------------------------------------- circuit breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_circuit_opens_after_failures_in_a_row_and_a_success_resets_the_count() -> None:
    clock = Clock()
    cb = CircuitBreaker("hall", failure_threshold=3, probe_initial=2, probe_max=16, clock=clock, jitter=lambda s: s)
    assert cb.failure("e") is None and cb.failure("e") is None
    assert cb.success() is None and cb.failures == 0  # a success in between: the count starts again
    cb.failure("e")
    cb.failure("e")
    t = cb.failure("connection refused")
    assert t is not None and (t.before, t.after) == (CLOSED, OPEN) and "connection refused" in t.reason
    assert not cb.sending and cb.until_probe() == 2


def test_probes_come_at_a_doubling_interval_up_to_the_maximum_and_a_good_probe_closes() -> None:
    clock = Clock()
    cb = CircuitBreaker("hall", failure_threshold=1, probe_initial=2, probe_max=5, clock=clock, jitter=lambda s: s)
    cb.failure("down")
    intervals = []
    for _ in range(4):
        assert cb.begin_probe() is None  # not yet due
        clock.now += cb.until_probe()
        t = cb.begin_probe()
        assert t is not None and t.after == HALF_OPEN and not cb.sending
        cb.failure("still down")
        intervals.append(cb.until_probe())
    assert intervals == [4, 5, 5, 5]
    clock.now += 5
    cb.begin_probe()
    closed = cb.success()
    assert closed is not None and closed.after == CLOSED and closed.probes == 5 and closed.open_for == pytest.approx(21)
    assert cb.sending and cb.interval == 2  # the next outage starts probing quickly again


def test_a_success_of_a_send_that_started_before_the_circuit_opened_closes_it() -> None:
    cb = CircuitBreaker("hall", failure_threshold=1, clock=Clock())
    cb.failure("down")
    t = cb.success()
    assert t is not None and (t.before, t.after) == (OPEN, CLOSED)


# --------------------------------------------------------------------------- the store's controls


def _item(key: str, case: str) -> AcceptItem:
    return AcceptItem(
        system="county", kind="case", record_key=key, version=1, case_no=case, business_time=None,
        receipt_time="2026-09-29T10:00:01+08:00", payload_hash=f"h-{key}", body=json.dumps({"kind": "case"}),
        ref=f"f.xml {key}", receipt_id=f"r-{key}", destinations=("hall",), idempotency_keys=(f"{key}-hall",),
        mapping="m@1")


async def test_pausing_twice_writes_one_audit_entry_and_resume_names_who_paused(store) -> None:
    c, changed = await store.pause_destination("hall", paused=True, actor="os:alice", reason="对方升级 13812345678",
                                               now=time.time())
    assert changed and c.paused and c.paused_by == "os:alice"
    assert "13812345678" not in (c.pause_reason or "")  # free text is masked before it is stored
    _, again = await store.pause_destination("hall", paused=True, actor="os:bob", now=time.time())
    assert not again
    _, resumed = await store.pause_destination("hall", paused=False, actor="os:bob", now=time.time())
    assert resumed
    entries = [json.loads(r.body) for r in await store.audit_entries()]
    actions = [(e["action"], e["detail"].get("actor")) for e in entries]
    assert actions == [("destination_paused", "os:alice"), ("destination_resumed", "os:bob")]
    assert entries[1]["detail"]["paused_by"] == "os:alice"


async def test_settings_are_audited_with_before_and_after_and_none_returns_to_the_configuration(store) -> None:
    await store.set_destination_settings("hall", {"concurrency": 2, "rate": 5.0}, actor="os:alice", now=time.time())
    c, _ = await store.set_destination_settings("hall", {"rate": None}, actor="os:alice", now=time.time())
    assert (c.concurrency, c.rate) == (2, None)
    details = [json.loads(r.body)["detail"] for r in await store.audit_entries()]
    assert details[0]["before"] == {"concurrency": None, "rate": None}
    assert details[1]["after"] == {"concurrency": 2, "rate": None}


async def test_closing_the_circuit_makes_every_waiting_delivery_due_now(store) -> None:
    await store.commit_ingest([_item(f"A{i}", f"C{i}") for i in range(3)], [])
    claimed = await store.claim("hall", 10, 60, time.time())
    later = time.time() + 3600
    await store.settle([Settlement(delivery_id=c.delivery_id, outcome="retry", destination="hall",
                                   idempotency_key=c.idempotency_key, kind=c.kind, record_key=c.record_key,
                                   case_no=c.case_no, attempt=1, error="503", next_attempt_at=later)
                        for c in claimed])
    assert await store.claim("hall", 10, 60, time.time()) == []
    await store.note_circuit("hall", "open", now=time.time(), failures=5, next_probe_at=time.time() + 2,
                             error="503", audit_action="circuit_opened")
    made_due = await store.note_circuit("hall", "closed", now=time.time(), failures=0, next_probe_at=None,
                                        audit_action="circuit_closed", detail={"probes": 1})
    assert made_due == 3
    assert len(await store.claim("hall", 10, 60, time.time())) == 3
    actions = [json.loads(r.body)["action"] for r in await store.audit_entries()]
    assert actions[-2:] == ["circuit_opened", "circuit_closed"]


async def test_a_released_claim_goes_back_unattempted_without_an_audit_entry(store) -> None:
    await store.commit_ingest([_item("A", "C")], [])
    (c,) = await store.claim("hall", 10, 60, time.time())
    before = (await store.audit_head())[0]
    await store.settle([Settlement(delivery_id=c.delivery_id, outcome="released", destination="hall",
                                   idempotency_key=c.idempotency_key, kind=c.kind, record_key=c.record_key,
                                   case_no=c.case_no, attempt=0, next_attempt_at=time.time())])
    assert (await store.audit_head())[0] == before
    (again,) = await store.claim("hall", 10, 60, time.time())
    assert again.attempts == 0


async def test_the_backlog_counts_deliveries_held_behind_a_dead_letter_of_their_case(store) -> None:
    await store.commit_ingest([_item("A1", "C1"), _item("A2", "C1"), _item("A3", "C1"), _item("B1", "C2")], [])
    first = [c for c in await store.claim("hall", 10, 60, time.time()) if c.record_key == "A1"][0]
    await store.settle([Settlement(delivery_id=first.delivery_id, outcome="dead", destination="hall",
                                   idempotency_key=first.idempotency_key, kind="case", record_key="A1",
                                   case_no="C1", attempt=1, error="400")])
    await store.note_outcomes("hall", now=time.time(), attempts=4, failures=1, last_success_at=time.time(),
                              last_error="PermanentError: 400")
    b = (await store.destination_backlog(["hall"], time.time()))["hall"]
    assert (b.waiting, b.dead, b.held, b.held_cases) == (3, 1, 2, 1)
    assert b.error_rate == 0.25
    assert b.oldest_created_at is not None


# --------------------------------------------------------------------------- configuration


def _config(tmp_path: Path, delivery: dict, sink: dict | None = None):
    return config_from_dict({"delivery": delivery, "sinks": {"hall": {"adapter": "rest", "mapping": "m.yaml",
                                                                      **(sink or {})}}}, base_dir=tmp_path)


def test_defaults_retry_for_seven_days_and_dead_letter_permanent_errors_at_once(tmp_path: Path) -> None:
    p = policy_for(_config(tmp_path, {}), "hall")
    assert (p.max_age, p.permanent_attempts, p.max_attempts) == (7 * 86400, 1, None)
    assert delivery_deprecations(_config(tmp_path, {})) == []


def test_max_attempts_is_reported_as_deprecated_with_the_outage_it_survives(tmp_path: Path) -> None:
    config = _config(tmp_path, {"max_attempts": 12}, {"max_attempts": 3, "rate": 5})
    warnings = delivery_deprecations(config)
    assert len(warnings) == 2
    assert warnings[0].startswith("delivery.max_attempts = 12 is deprecated")
    assert "about 14 minutes" in warnings[0]  # 1 s … 5 min backoff, 12 attempts: the 10–20 minutes
    assert warnings[1].startswith("sinks.hall.max_attempts = 3")
    p = policy_for(config, "hall")
    assert (p.max_attempts, p.rate) == (3, 5)


def test_gateway_check_warns_about_max_attempts_and_still_passes(tmp_path: Path) -> None:
    from e2e_site import Site

    site = Site(tmp_path, "http://127.0.0.1:9/api/records", max_attempts=12)
    result = CliRunner().invoke(main, ["check", "-c", str(site.config_path)])
    assert result.exit_code == 0, result.output
    assert "warning: delivery.max_attempts = 12 is deprecated" in result.output
    clean = Site(tmp_path / "clean", "http://127.0.0.1:9/api/records")
    assert "max_attempts" not in CliRunner().invoke(main, ["check", "-c", str(clean.config_path)]).output


def test_probe_max_shorter_than_probe_initial_is_refused(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="probe_max is shorter than delivery.probe_initial"):
        _config(tmp_path, {"probe_initial": "10s", "probe_max": "1s"})


"""Refusals in the audit trail: the first of a kind at once, identical ones summarised per window, a flood of
distinct ones capped, and a failing trail never turning a refusal into an error."""

from __future__ import annotations

from typing import Any

from gateway.security.refusals import ACTION, RefusalEvent, RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


class Trail:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def __call__(self, action: str, **fields: Any) -> int:
        self.entries.append({"action": action, **fields})
        return len(self.entries)


def event(remote: str = "10.0.0.7", reason: str = "invalid_token") -> RefusalEvent:
    return RefusalEvent("city_platform", reason, 401, "the bearer token is not a token of system 'city_platform'",
                        remote=remote, path="/api/v1/inbound/city_platform/case")


async def test_identical_refusals_are_one_entry_at_once_and_one_summary_when_the_window_closes() -> None:
    clock, trail = Clock(), Trail()
    log = RefusalLog(trail, window=60, clock=clock)
    for _ in range(500):
        await log.record(event())
        clock.now += 0.01
    assert len(trail.entries) == 1 and trail.entries[0]["action"] == ACTION
    assert trail.entries[0]["detail"]["count"] == 1 and trail.entries[0]["system"] == "city_platform"

    clock.now += 60
    await log.record(event())  # the next window's first refusal closes the previous window
    await log.close()
    summary = trail.entries[1]["detail"]
    assert summary["summary"] is True and summary["count"] == 499 and summary["window_seconds"] == 60
    assert summary["first_at"] < summary["last_at"]
    assert trail.entries[2]["detail"]["count"] == 1  # the new window's first
    assert len(trail.entries) == 3


async def test_a_flood_of_distinct_refusals_is_capped_per_window() -> None:
    clock, trail = Clock(), Trail()
    log = RefusalLog(trail, window=60, max_keys=10, clock=clock)
    for i in range(1000):  # an attacker varying its source address on every request
        await log.record(event(remote=f"10.1.{i // 250}.{i % 250}"))
    await log.close()
    first = [e for e in trail.entries if not e["detail"].get("summary")]
    summaries = [e for e in trail.entries if e["detail"].get("summary")]
    assert len(first) == 10
    (overflow,) = summaries
    assert overflow["detail"]["count"] == 990 and len(overflow["detail"]["remotes"]) == 20
    assert "more distinct refusals" in overflow["detail"]["message"]


async def test_the_counter_counts_every_refusal_by_system_and_reason() -> None:
    log = RefusalLog(Trail(), clock=Clock())
    for reason in ("invalid_token", "invalid_token", "replayed"):
        await log.record(event(reason=reason))
    text = log.render().decode()
    assert 'gateway_counterpart_refusals_total{reason="invalid_token",system="city_platform"} 2.0' in text
    assert 'gateway_counterpart_refusals_total{reason="replayed",system="city_platform"} 1.0' in text


async def test_an_unavailable_trail_does_not_turn_a_refusal_into_an_error() -> None:
    async def broken(action: str, **fields: Any) -> int:
        raise RuntimeError("store is unavailable")

    log = RefusalLog(broken, clock=Clock())
    await log.record(event())  # no exception
    assert log.written == 0

"""The file-drop sink: one complete file per delivery, named by its idempotency key, readable by a file-drop source."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from test_filedrop import FakeContext, FakeStore, listing, make_config, run_until

from gateway.adapters import Delivery, PermanentError, RetryableError, Sink
from gateway_adapters.filedrop import ADAPTER, FiledropSinkConfig, FiledropSource, file_name, is_temporary


def delivery(n: int, body: object = None, key: str | None = None) -> Delivery:
    return Delivery(
        delivery_id=n,
        destination="market-regulation",
        idempotency_key=key or f"county-case-3706{n:04d}-v1-market-regulation",
        kind="approval_result",
        record_key=f"3706{n:04d}",
        case_no=f"3706{n:04d}",
        body=body
        if body is not None
        else {"XK_XDR_MC": "烟台市某某食品有限公司", "XK_WSH": f"烟审字〔2026〕{n}号"},
        attempt=1,
    )


def make_sink(root: Path, **overrides: object):
    config = FiledropSinkConfig.model_validate({"path": str(root), **overrides})
    return ADAPTER.make_sink("market-regulation", config)


async def test_each_delivery_is_one_json_file_named_by_its_idempotency_key(tmp_path: Path) -> None:
    sink = make_sink(tmp_path / "out")
    assert isinstance(sink, Sink)
    await sink.start()
    results = await sink.deliver([delivery(1), delivery(2)])
    await sink.close()

    assert [r.error for r in results] == [None, None]
    names = listing(tmp_path / "out")
    assert names == [
        "county-case-37060001-v1-market-regulation.json",
        "county-case-37060002-v1-market-regulation.json",
    ]
    body = json.loads((tmp_path / "out" / names[0]).read_text(encoding="utf-8"))
    assert body["XK_XDR_MC"] == "烟台市某某食品有限公司"
    assert "烟台市" in (tmp_path / "out" / names[0]).read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    assert results[0].receipt.remote_id == names[0]


async def test_redelivery_rewrites_the_same_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    sink = make_sink(tmp_path / "out", marker=True)
    await sink.start()
    await sink.deliver([delivery(1)])
    await sink.deliver([delivery(1)])
    assert listing(tmp_path / "out") == [
        "county-case-37060001-v1-market-regulation.json",
        "county-case-37060001-v1-market-regulation.json.done",
    ]
    assert not any(is_temporary(name) for name in os.listdir(tmp_path / "out"))


def test_unsafe_keys_become_safe_distinct_names() -> None:
    first = file_name(delivery(1, key="a/b:c"), "json")
    second = file_name(delivery(1, key="a_b_c"), "json")
    third = file_name(delivery(1, key="a:b/c"), "json")
    assert "/" not in first and ":" not in first
    assert len({first, second, third}) == 3
    assert len(file_name(delivery(1, key="k" * 1000), "json")) < 200
    assert file_name(delivery(1, key="../../etc/passwd"), "xml").endswith(".xml")
    assert "/" not in file_name(delivery(1, key="../../etc/passwd"), "xml")


async def test_bytes_bodies_are_written_as_they_are(tmp_path: Path) -> None:
    sink = make_sink(tmp_path / "out", extension="xml")
    await sink.start()
    payload = '<?xml version="1.0" encoding="GBK"?><R>烟台</R>'.encode("gbk")
    [result] = await sink.deliver([delivery(7, body=payload)])
    assert result.error is None
    assert (tmp_path / "out" / result.receipt.remote_id).read_bytes() == payload


async def test_a_body_that_is_not_json_is_a_permanent_error_and_a_full_or_missing_folder_retryable(
    tmp_path: Path,
) -> None:
    sink = make_sink(tmp_path / "out")
    await sink.start()
    [bad] = await sink.deliver([delivery(1, body={"when": object()})])
    assert isinstance(bad.error, PermanentError) and "market-regulation" in str(bad.error)

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    sink = make_sink(blocked / "out")
    [result] = await sink.deliver([delivery(2)])
    assert isinstance(result.error, RetryableError)
    assert "cannot write" in str(result.error)


async def test_files_written_by_the_sink_are_read_back_by_a_source_on_the_other_side(tmp_path: Path) -> None:
    exchange = tmp_path / "exchange"
    sink = make_sink(exchange)
    await sink.start()
    await sink.deliver([delivery(n) for n in range(1, 6)])

    store = FakeStore()
    source = FiledropSource("market-regulation", make_config(exchange, include=["*.json"]))
    await run_until(
        source, FakeContext(store, {"format": "json"}), lambda: len(listing(exchange / "done")) == 5
    )
    assert sorted(r.payload["XK_WSH"] for r in store.records) == sorted(
        f"烟审字〔2026〕{n}号" for n in range(1, 6)
    )


@pytest.mark.parametrize("value", ["", "a/b"])
def test_sink_config_rejects_bad_extensions(value: str) -> None:
    with pytest.raises(ValueError):
        FiledropSinkConfig.model_validate({"path": "/tmp/x", "extension": value})


async def test_deliver_runs_off_the_event_loop(tmp_path: Path) -> None:
    sink = make_sink(tmp_path / "out", batch_size=500)
    await sink.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await sink.deliver([delivery(n) for n in range(300)])
    task.cancel()
    assert ticks > 1
    assert len(listing(tmp_path / "out")) == 300

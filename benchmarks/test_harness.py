"""Checks of the end-to-end benchmark harness itself: the counting sink counts honestly, the peers map alike.

    .venv/bin/python -m pytest -q benchmarks/test_harness.py

Not part of the gateway's suite (tests/ is); run it after changing the sink or a peer.
compare.py's verification round checks the three contestants against each other on every run.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))

from _push_load import ack_lean, hall_items  # noqa: E402
from bare_post import shipped_mapping_id, to_hall  # noqa: E402
from bench_mapping import map_by_hand, record  # noqa: E402
from counting_sink import CountingSink, parse_seconds  # noqa: E402

from gateway.adapters import RawRecord  # noqa: E402
from gateway.mapping import load_mapping  # noqa: E402
from gateway.pipeline.ingest import Ingestor  # noqa: E402
from gateway.pipeline.router import Router, Rule  # noqa: E402

MAPPINGS = BENCH.parent / "mappings"


@pytest.fixture
async def sink_client(aiohttp_client: Any) -> Any:
    sink = CountingSink()
    client = await aiohttp_client(sink.app())
    client.sink = sink
    return client


async def test_sink_counts_a_repeated_key_as_a_repeat_not_as_a_new_record(sink_client: Any) -> None:
    for _ in range(2):
        resp = await sink_client.post("/api/records", json={"caseNo": "1"}, headers={"Idempotency-Key": "k1"})
        assert resp.status == 200 and await resp.json() == {"status": "ok"}
    stats = (await (await sink_client.get("/stats")).json())
    assert (stats["records_raw"], stats["unique"], stats["repeats"]) == (2, 1, 1)


async def test_sink_reads_one_percent_encoded_key_per_array_item_and_answers_one_result_each(sink_client: Any) -> None:
    resp = await sink_client.post("/x", json=[{"a": 1}, {"a": 2}, {"a": 3}],
                                  headers={"Idempotency-Key": "k%2C1, k2, k%253"})
    assert await resp.json() == [{"status": "ok"}] * 3
    assert sink_client.sink.keys == {"k,1", "k2", "k%3"}


async def test_sink_refuses_an_array_whose_keys_do_not_match_its_items_and_counts_none_of_it(sink_client: Any) -> None:
    resp = await sink_client.post("/x", json=[{"a": 1}, {"a": 2}], headers={"Idempotency-Key": "only-one"})
    assert resp.status == 400
    assert "1 keys for 2 items" in (await resp.json())["error"]
    resp = await sink_client.post("/x", json={"a": 1})
    assert resp.status == 400
    stats = sink_client.sink.stats()
    assert (stats["unique"], stats["rejected_requests"]) == (0, 2)


async def test_sink_holds_each_answer_for_the_added_latency(aiohttp_client: Any) -> None:
    client = await aiohttp_client(CountingSink(latency=0.05).app())
    began = time.monotonic()
    await asyncio.gather(*(client.post("/x", json={"n": n}, headers={"Idempotency-Key": str(n)}) for n in range(4)))
    assert 0.05 <= time.monotonic() - began < 0.5  # held concurrently, not one after another


def test_sink_latency_is_given_as_a_duration() -> None:
    assert parse_seconds("20ms") == pytest.approx(0.02)
    assert parse_seconds("0.5s") == 0.5
    with pytest.raises(Exception, match="not a duration"):
        parse_seconds("twenty")


def test_bare_peer_renders_the_body_the_gateway_renders_for_the_same_case() -> None:
    inbound = load_mapping(MAPPINGS / "provincial_approvedatainfo.in.yaml")
    outbound = load_mapping(MAPPINGS / "hall_platform.out.yaml")
    ingestor = Ingestor(None, Router([Rule(name="all", to=("counting_sink",))]), {"county_drop": inbound})  # type: ignore[arg-type]
    rng = random.Random(4)
    for i in range(300):  # every third case carries its time as YYYY-MM-DD hh:mm:ss
        item = record(i, rng)
        accepted, quarantined = ingestor.prepare("county_drop", [RawRecord(system="county_drop", payload=item,
                                                                           ref=str(i))])
        assert not quarantined
        gateway_body = outbound.render(json.loads(accepted[0].body))
        (mapped,) = map_by_hand(item)
        bare_body = to_hall(mapped.data, "county_drop", gateway_body["meta"]["receivedAt"], shipped_mapping_id())
        assert bare_body == gateway_body


def test_push_load_items_are_cases_the_hall_platform_mapping_accepts() -> None:
    mapping = load_mapping(MAPPINGS / "hall_platform.in.yaml")
    items = [json.loads(b) for b in hall_items(50, seed=5)]
    assert len({item["caseNo"] for item in items}) == 50
    for item in items:
        (mapped,) = mapping.map(item)
        assert mapped.kind == "case" and mapped.errors == []


@pytest.mark.parametrize("answer", ["length", "chunked", "close"])
async def test_the_lean_push_client_counts_what_a_real_server_answers(aiohttp_server: Any, answer: str,
                                                                     monkeypatch: Any) -> None:
    """The ack load's own HTTP client reads a real server's answers whether their bodies come by
    Content-Length or chunked, and whether the server keeps the connection or closes it, and sends
    every item with its bearer token."""
    seen: list[tuple[str | None, bytes]] = []

    async def inbound(request: web.Request) -> web.StreamResponse:
        seen.append((request.headers.get("Authorization"), await request.read()))
        status = 202 if len(seen) % 5 else 200
        if answer == "chunked":
            response = web.StreamResponse(status=status)
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b'{"items":')
            await response.write(b"[]}")
            await response.write_eof()
            return response
        headers = {"Connection": "close"} if answer == "close" else {}
        return web.json_response({"items": []}, status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/api/v1/inbound/hall_platform/case", inbound)
    server = await aiohttp_server(app)
    items = hall_items(30, seed=5)
    monkeypatch.setenv("BENCH_PUSH_TOKEN", "t0ken")
    result = await ack_lean(str(server.make_url("/api/v1/inbound/hall_platform/case")), 100.0, 0.2, 0.1, items)
    assert result["statuses"] == {"202": 24, "200": 6}, result
    assert result["measured"] == 20 and not result["errors"]
    assert sorted(body for _, body in seen) == sorted(items)
    assert {auth for auth, _ in seen} == {"Bearer t0ken"}

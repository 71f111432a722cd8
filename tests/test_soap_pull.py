"""SOAP pull source against the real spyne test service on loopback: paging by page number and by
continuation token, the watermark committed with each page, resuming after a restart, the
provincial exchange envelope as pure configuration, and failures while pulling."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from soap_server import Control, SoapTestServer, make_records
from soap_server.context import Crash, MemoryContext

from gateway.adapters import PermanentError, RetryableError
from gateway_adapters.soap import SoapSetupError, SoapSource, SoapSourceConfig

TOTAL = 95


@pytest.fixture
def server():
    with SoapTestServer(Control(records=make_records(TOTAL))) as running:
        yield running


@pytest.fixture
def records_wsdl(server: SoapTestServer, tmp_path: Path) -> Path:
    return server.write_records_wsdl(tmp_path / "records.wsdl")


def pull_config(wsdl: Path, endpoint: str, **pull: Any) -> SoapSourceConfig:
    settings: dict[str, Any] = {
        "operation": "QueryRecords",
        "request": {"since": "{cursor}", "page": "{page}", "pageSize": "{page_size}"},
        "items_path": "records.Record",
        "paging": {"mode": "page", "page_size": 20, "has_more_path": "hasMore"},
        "watermark_field": "modifiedTime",
        "interval_seconds": 0.05,
    }
    settings.update(pull)
    return SoapSourceConfig.model_validate(
        {"wsdl": str(wsdl), "endpoint": endpoint, "timeouts": {"read": 5, "total": 10}, "pull": settings}
    )


async def pull(config: SoapSourceConfig, ctx: MemoryContext):
    source = SoapSource("county-hall", config)
    try:
        return await source.pull_once(ctx)
    finally:
        await source.close()


async def test_pull_pages_through_every_record_and_commits_the_watermark_with_each_page(server, records_wsdl):
    ctx = MemoryContext()
    report = await pull(pull_config(records_wsdl, server.records_url), ctx)

    assert report.complete and report.pages == 5 and report.records == TOTAL
    assert [len(batch) for batch in ctx.batches] == [20, 20, 20, 20, 15]
    expected = make_records(TOTAL)
    assert [record.payload for record in ctx.records] == expected  # plain dicts, ints stay ints
    assert all(type(record.payload) is dict for record in ctx.records)
    assert ctx.records[0].system == "county-hall"
    assert ctx.batches[2][0].ref == "operation QueryRecords page 3 item 1"
    # Each page's cursor is the newest modification time in it, committed in the same ingest call.
    assert ctx.cursor_log == [
        ("soap:county-hall:QueryRecords", batch[-1].payload["modifiedTime"]) for batch in ctx.batches
    ]
    assert report.cursor_after == expected[-1]["modifiedTime"]
    assert [(q["since"], q["page"], q["pageSize"]) for q in server.control.queries] == [
        (None, page, 20) for page in range(1, 6)
    ]


async def test_pull_follows_continuation_tokens_from_the_response(server, records_wsdl):
    ctx = MemoryContext()
    config = pull_config(
        records_wsdl,
        server.records_url,
        request={"since": "{cursor}", "pageSize": "{page_size}", "token": "{token}"},
        paging={"mode": "token", "page_size": 30, "next_token_path": "nextToken"},
    )
    report = await pull(config, ctx)

    assert report.complete and report.pages == 4
    assert [record.payload["id"] for record in ctx.records] == [r["id"] for r in make_records(TOTAL)]
    tokens = [query["token"] for query in server.control.queries]
    assert tokens[0] is None and all(tokens[1:]) and len(set(tokens)) == 4
    assert ctx.batches[1][0].ref == "operation QueryRecords page 2 item 1"


async def test_pull_resumes_from_the_persisted_cursor_after_a_restart(server, records_wsdl):
    config = pull_config(records_wsdl, server.records_url)
    first = MemoryContext()
    first.crash_after_batches = 2  # the gateway dies while committing page 3
    with pytest.raises(Crash):
        await pull(config, first)
    committed = first.cursors["soap:county-hall:QueryRecords"]
    assert committed == first.batches[-1][-1].payload["modifiedTime"]

    # "Restart": a new source and a context that only knows what was committed.
    second = MemoryContext(cursors=first.cursors)
    report = await pull(config, second)

    assert report.cursor_before == committed and report.complete
    assert server.control.queries[-report.pages]["since"] == committed
    seen = Counter(record.payload["id"] for record in first.records + second.records)
    assert set(seen) == {r["id"] for r in make_records(TOTAL)}  # nothing lost
    again = {record_id for record_id, count in seen.items() if count > 1}
    boundary = {r["id"] for r in make_records(TOTAL) if r["modifiedTime"] == committed}
    assert again == boundary  # only records sharing the watermark come twice; the ingestor dedupes them


async def test_the_next_run_fetches_only_what_changed_since_the_watermark(server, records_wsdl):
    config = pull_config(records_wsdl, server.records_url)
    ctx = MemoryContext()
    await pull(config, ctx)
    last_time = ctx.cursors["soap:county-hall:QueryRecords"]
    newer = [
        {**row, "id": f"N{index}", "modifiedTime": f"2026-10-0{index} 09:00:00"}
        for index, row in enumerate(make_records(3), start=1)
    ]
    server.control.records.extend(newer)
    ctx.batches.clear()

    report = await pull(config, ctx)

    ids = [record.payload["id"] for record in ctx.records]
    boundary = [r["id"] for r in make_records(TOTAL) if r["modifiedTime"] == last_time]
    assert ids == boundary + ["N1", "N2", "N3"]
    assert report.cursor_after == "2026-10-03 09:00:00"


async def test_unsorted_items_advance_the_cursor_only_after_the_last_page(server, records_wsdl):
    ctx = MemoryContext()
    await pull(pull_config(records_wsdl, server.records_url, items_sorted_by_watermark=False), ctx)

    assert ctx.cursor_log[:-1] == [None] * 4
    assert ctx.cursor_log[-1] == ("soap:county-hall:QueryRecords", make_records(TOTAL)[-1]["modifiedTime"])


async def test_run_pulls_on_its_schedule_until_the_gateway_stops(server, records_wsdl):
    ctx = MemoryContext()
    source = SoapSource("county-hall", pull_config(records_wsdl, server.records_url, cursor_name="county-feed"))
    task = asyncio.create_task(source.run(ctx))

    async def wait_for(count: int) -> None:
        while len({record.payload["id"] for record in ctx.records}) < count:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait_for(TOTAL), timeout=10)
    server.control.records.append({**make_records(1)[0], "id": "LATE", "modifiedTime": "2026-12-31 23:59:59"})
    await asyncio.wait_for(wait_for(TOTAL + 1), timeout=10)
    ctx.stopping.set()
    await asyncio.wait_for(task, timeout=5)
    assert ctx.cursors == {"county-feed": "2026-12-31 23:59:59"}


async def test_pull_in_the_provincial_exchange_envelope_is_configuration_only(server):
    ctx = MemoryContext(system="province")
    config = SoapSourceConfig.model_validate(
        {
            "wsdl": "builtin:provincial-exchange.wsdl",
            "endpoint": server.exchange_url,
            "pull": {
                "operation": "service",
                "soap_headers": {"serviceId": "records.query"},
                "request": {
                    "Header": {
                        "sender": "HALL-440300",
                        "receiver": "PROV-440000",
                        "flow": "query",
                        "item": "records",
                        "sn": "Q-{cursor}-{page}",
                        "securityType": "0",
                        "operator": "gateway",
                    }
                },
                "query": {"QUERY": {"SINCE": "{cursor}", "PAGE": "{page}", "PAGESIZE": "{page_size}"}},
                "body_at": "Body",
                "body_as": "xml",
                "response_xml_at": "Body",
                "items_path": "RESULT.DATA.RECORDS.RECORD",
                "paging": {"mode": "page", "page_size": 40, "has_more_path": "RESULT.DATA.HASMORE"},
                "watermark_field": "MODIFIEDTIME",
                "initial_cursor": "2026-09-01 08:00:00",
            },
        }
    )
    report = await pull(config, ctx)

    assert report.pages == 3 and report.records == TOTAL
    first = ctx.records[0]
    assert first.payload["ID"] == "R000001" and first.payload["APPLICANT"] == "申请人1"
    assert first.ref == "operation service page 1 item 1"
    exchange = server.control.exchanges[0]
    assert exchange["serviceId"] == "records.query"
    assert exchange["header"]["sender"] == "HALL-440300" and exchange["header"]["sn"] == "Q-2026-09-01 08:00:00-1"
    assert exchange["body"] == (
        "<QUERY><SINCE>2026-09-01 08:00:00</SINCE><PAGE>1</PAGE><PAGESIZE>40</PAGESIZE></QUERY>"
    )
    assert ctx.cursors == {"soap:county-hall:service": make_records(TOTAL)[-1]["modifiedTime"]}


async def test_a_watermark_stored_under_the_old_operation_only_name_is_continued(server, records_wsdl):
    old = make_records(TOTAL)[29]["modifiedTime"]
    ctx = MemoryContext(cursors={"soap:QueryRecords": old})  # an older release's default name
    report = await pull(pull_config(records_wsdl, server.records_url), ctx)
    assert report.cursor_before == old and 0 < report.records < TOTAL  # went on from there, not from the start
    assert ctx.cursors["soap:county-hall:QueryRecords"] == make_records(TOTAL)[-1]["modifiedTime"]


async def test_a_server_fault_is_retried_then_abandoned_without_moving_the_cursor(server, records_wsdl):
    server.control.fault_mode = "server"
    ctx = MemoryContext(cursors={"soap:QueryRecords": "2026-09-01 08:00:07"})
    with pytest.raises(RetryableError, match="Server.Unavailable"):
        await pull(pull_config(records_wsdl, server.records_url, page_attempts=2), ctx)
    assert server.control.requests == 2
    assert ctx.batches == [] and ctx.cursors == {"soap:QueryRecords": "2026-09-01 08:00:07"}


async def test_a_client_fault_is_not_retried(server, records_wsdl):
    server.control.fault_mode = "client"
    with pytest.raises(PermanentError, match="Client.InvalidRequest") as caught:
        await pull(pull_config(records_wsdl, server.records_url, page_attempts=3), MemoryContext())
    assert server.control.requests == 1
    assert "请求参数不符合规范" in str(caught.value)


async def test_an_item_that_is_not_a_structure_is_handed_on_with_an_error(server, records_wsdl):
    ctx = MemoryContext()
    config = pull_config(
        records_wsdl, server.records_url, items_path="records.Record.0.id", paging={"mode": "none"},
        watermark_field=None,
    )
    await pull(config, ctx)
    (record,) = ctx.records
    assert record.payload == {} and "not a structure" in (record.error or "") and "R000001" in record.error


async def test_start_names_the_operations_the_wsdl_has_when_one_is_missing(server, records_wsdl):
    source = SoapSource("county-hall", pull_config(records_wsdl, server.records_url, operation="QueryCases"))
    with pytest.raises(SoapSetupError, match=r"no operation 'QueryCases' \(it has QueryRecords, SubmitRecord\)"):
        await source.start()


async def test_run_survives_a_failing_ingest_and_repeats_the_uncommitted_page(server, records_wsdl):
    ctx = MemoryContext()
    ctx.crash_after_batches = 1
    source = SoapSource("county-hall", pull_config(records_wsdl, server.records_url, interval_seconds=0.05))
    task = asyncio.create_task(source.run(ctx))
    while ctx.crashes < 1:  # page 2's commit has failed
        await asyncio.sleep(0.005)
    ctx.crash_after_batches = None  # the store is back
    while len(ctx.batches) < 5:
        await asyncio.sleep(0.02)
    ctx.stopping.set()
    await asyncio.wait_for(task, timeout=5)
    ids = [record.payload["id"] for record in ctx.records]
    assert set(ids) == {r["id"] for r in make_records(TOTAL)}
    # Page 2 failed to commit, so the next run starts again at page 1's watermark: the pair of
    # records sharing it (R000019, R000020) comes again, then the rest.
    assert ctx.cursor_log[0] == ("soap:county-hall:QueryRecords", "2026-09-01 08:01:03")
    assert [r.payload["id"] for r in ctx.batches[1][:2]] == ["R000019", "R000020"]

"""Poison and hostile input against a real running gateway: over the push API and over a file drop.

Every item ends as exactly one of stored, duplicate or quarantined; the counts add up; bad
data never gets a 5xx; a file never stays in processing/; reading the same bad items again
does not add quarantine entries; a fixed mapping makes reprocessed entries land.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result
from poison_corpus import Case, corpus, jsonl, push_body
from test_api_support import PUSH_AUTH, case_item, http_fixture, write_gateway_dir  # noqa: F401

from gateway.app import Gateway
from gateway.cli import main
from gateway.config import load_config

PUSH = "/api/v1/inbound/hall_platform"
LIMITS = "input = { max_members = 2000, max_string_chars = 65536 }"
OUTCOMES = {"accepted", "duplicate", "superseded", "quarantined"}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A running gateway (push sources, a file drop, an archive sink) that takes bodies up to 4 MB.

    The push source and the file drop read with the same, tighter input limits.
    """
    config = write_gateway_dir(tmp_path, max_body=4 * 1024 * 1024)
    text = config.read_text(encoding="utf-8")
    for source in ("hall_platform", "county_files"):
        text = text.replace(f'[sources.{source}]\nadapter', f'[sources.{source}]\n{LIMITS}\nadapter')
    config.write_text(text, encoding="utf-8")
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def _pushed(gw: Gateway) -> list[dict]:
    """Records the counterpart's pushes stored (supervision alerts are the gateway's own)."""
    return [r for r in await gw.store.list_records(limit=1000) if r["system"] == "hall_platform"]


async def push(http: aiohttp.ClientSession, gw: Gateway, body: bytes) -> tuple[int, dict]:
    async with http.post(gw.api.url + PUSH, data=body, headers={**PUSH_AUTH, "Content-Type": "application/json"}) as r:
        return r.status, await r.json()


def _check_outcomes(cases: list[Case], statuses: list[str], errors: list[list[dict]]) -> None:
    assert len(statuses) == len(cases)
    for case, status, errs in zip(cases, statuses, errors, strict=True):
        assert status in OUTCOMES, case.name
        if case.expect is not None:
            assert status == case.expect, f"{case.name}: {status} {errs}"
        rule = case.rule
        if status == "quarantined" and rule is not None:
            assert rule in {e.get("rule") for e in errs}, f"{case.name}: {errs}"


async def test_a_push_of_poison_among_good_items_lands_the_good_and_refuses_each_bad_one_alone(gw, http) -> None:
    cases = corpus("PP")
    status, body = await push(http, gw, push_body(cases))

    assert status == 400  # some items were refused; never a 5xx, never "send it again"
    assert body["committed"] is True and "send it again" not in json.dumps(body)
    items = body["items"]
    _check_outcomes(cases, [i["status"] for i in items], [i["errors"] for i in items])
    counts = {s: sum(1 for i in items if i["status"] == s) for s in OUTCOMES}
    assert body["items_received"] == len(cases) == sum(counts.values())
    assert (body["accepted"], body["duplicates"], body["quarantined"]) == (
        counts["accepted"], counts["duplicate"], counts["quarantined"])
    # What was acknowledged is in the store; each refused item has its own quarantine entry.
    stored = await _pushed(gw)
    assert len(stored) == counts["accepted"] + counts["superseded"]
    entry_ids = [i["quarantine_ids"][0] for i in items if i["status"] == "quarantined"]
    assert len(set(entry_ids)) == counts["quarantined"]
    open_entries = await gw.store.quarantine_count(state="open")
    assert open_entries == counts["quarantined"]

    # The same request again: nothing new is stored, and the refused items are counted, not re-added.
    status, again = await push(http, gw, push_body(cases))
    assert status == 400
    assert again["accepted"] == 0 and again["quarantined"] == counts["quarantined"]
    assert len(await _pushed(gw)) == len(stored)
    assert await gw.store.quarantine_count(state="open") == open_entries
    assert {e["seen_count"] for e in await gw.store.quarantine_entries(state="open", limit=100)} == {2}


async def test_a_body_too_deep_to_parse_that_is_one_item_is_that_item_refused_not_a_server_error(gw, http) -> None:
    status, body = await push(http, gw, b'{"caseNo": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    assert status == 400
    (item,) = body["items"]
    assert item["status"] == "quarantined" and item["errors"][0]["rule"] == "json_depth"


async def test_xml_items_over_the_limits_are_refused_alone(gw, http) -> None:
    good = "".join(f"<{k}>{v}</{k}>" for k, v in case_item("PX-GOOD").items())
    long_text = "".join(f"<{k}>{v}</{k}>" for k, v in case_item("PX-LONG", remark="长" * 70_000).items())
    body = f"<records><record>{good}</record><record>{long_text}</record></records>".encode()
    async with http.post(gw.api.url + PUSH, data=body, headers={**PUSH_AUTH, "Content-Type": "application/xml"}) as r:
        assert r.status == 400
        answer = await r.json()
    assert [i["status"] for i in answer["items"]] == ["accepted", "quarantined"]
    assert answer["items"][1]["errors"][0]["rule"] == "xml_string_length"


async def _file_done(gw: Gateway, name: str, timeout: float = 20.0) -> dict:
    """The ``file_done`` audit detail of the dropped file ``name``, once the source has filed it under done/."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in await gw.store.audit_entries(limit=100_000):
            entry = row.decoded()
            if entry["action"] == "file_done" and entry["detail"]["file"] == name:
                return entry["detail"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} was not done within {timeout}s")


async def _moved_out_of_processing(drop: Path, timeout: float = 20.0) -> None:
    """The source audits file_done before it moves the file (a crash in between repeats the entry): wait for the move."""
    deadline = time.monotonic() + timeout
    while list((drop / "processing").rglob("*.jsonl")):
        if time.monotonic() > deadline:
            raise AssertionError(f"still in processing/ after {timeout}s")
        await asyncio.sleep(0.05)


async def test_a_dropped_file_of_poison_lands_the_good_lines_quarantines_each_bad_one_and_leaves_processing(
        gw, http, tmp_path: Path) -> None:
    cases = corpus("PF")
    drop = tmp_path / "drop"
    (drop / "poison.jsonl").write_bytes(jsonl(cases))

    detail = await _file_done(gw, "poison.jsonl")
    await _moved_out_of_processing(drop)
    assert [p.name.split("-", 1)[1] for p in (drop / "done").iterdir()] == ["poison.jsonl"]
    outcomes = detail["outcomes"]
    assert sum(outcomes.values()) == detail["items"] == len(cases)
    # Per line: the quarantine names the line; a record names it in its provenance.
    entries = await gw.store.quarantine_entries(system="county_files", limit=1000)
    records = [r for r in await gw.store.list_records(limit=1000) if r["system"] == "county_files"]
    assert len(entries) == outcomes.get("quarantined", 0)
    assert len(records) == outcomes.get("accepted", 0) + outcomes.get("superseded", 0)
    by_line: dict[int, str] = {}
    for e in entries:
        by_line[int(e["ref"].rsplit(" ", 1)[1])] = "quarantined"
    for r in records:
        by_line[int(r["ref"].rsplit(" ", 1)[1])] = "accepted"
    duplicate_lines = [i + 1 for i, c in enumerate(cases) if c.expect == "duplicate"]
    for line in duplicate_lines:
        by_line.setdefault(line, "duplicate")
    statuses = [by_line.get(i + 1, "missing") for i in range(len(cases))]
    errors = [next((e["errors"] for e in entries if e["ref"].endswith(f" {i + 1}")), []) for i in range(len(cases))]
    _check_outcomes(cases, statuses, errors)

    # The same file dropped again under another name: no new records, no new entries, each counted twice.
    (drop / "poison-again.jsonl").write_bytes(jsonl(cases))

    again = await _file_done(gw, "poison-again.jsonl")
    assert again["outcomes"].get("accepted", 0) == 0
    assert len(await gw.store.quarantine_entries(system="county_files", limit=1000)) == len(entries)
    assert {e["seen_count"] for e in await gw.store.quarantine_entries(system="county_files", limit=1000)} == {2}
    await _moved_out_of_processing(drop)


async def test_reprocess_after_a_mapping_fix_lands_the_entries_it_fixes_and_keeps_the_rest(tmp_path: Path) -> None:
    config_path = write_gateway_dir(tmp_path)
    gw = Gateway(load_config(config_path))
    await gw.start()
    try:
        items = [case_item("RP-1", channel="WECHAT"), case_item("RP-2", channel="WECHAT"),
                 case_item("RP-3", id_no="110105194912310021"), case_item("RP-4")]
        async with aiohttp.ClientSession() as http:
            status, body = await push(http, gw, json.dumps(items).encode())
        assert status == 400
        assert [i["status"] for i in body["items"]] == ["quarantined", "quarantined", "quarantined", "accepted"]
    finally:
        await gw.stop()

    async def gateway_cli(*args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, main, [*args, "-c", str(config_path)])

    # Before the fix a dry run says they would stay.
    dry = await gateway_cli("quarantine", "reprocess", "--all", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing changed: still bad 3" in dry.output
    # The integration engineer adds the code the counterpart started sending.
    table = tmp_path / "mappings" / "codetables" / "hall_platform.yaml"
    table.write_text(table.read_text(encoding="utf-8").replace('      APP: "3"\n', '      APP: "3"\n      WECHAT: "3"\n'),
                     encoding="utf-8")
    dry = await gateway_cli("quarantine", "reprocess", "--all", "--dry-run")
    assert "would land 2" in dry.output and "still bad 1" in dry.output
    done = await gateway_cli("quarantine", "reprocess", "--all", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["counts"] == {"landed": 2, "still_bad": 1}
    landed = [r for r in report["results"] if r["outcome"] == "landed"]
    assert sorted(r["records"][0]["record_key"] for r in landed) == ["RP-1", "RP-2"]

    gw = Gateway(load_config(config_path), run_sources=False, run_delivery=False)
    await gw.start()
    try:
        records = {r["record_key"]: r for r in await _pushed(gw)}
        assert set(records) == {"RP-1", "RP-2", "RP-4"}
        assert records["RP-1"]["ref"] == f"POST {PUSH} item 0 (reprocessed from quarantine 1)"
        assert records["RP-1"]["record"]["data"]["channel"] == "3"
        # Routed like any record: the landed ones wait in the outbox for the archive sink.
        assert {d["case_no"] for d in await gw.store.list_deliveries(destination="archive", limit=100)} == {
            "RP-1", "RP-2", "RP-4"}
        open_entries = await gw.store.quarantine_entries(state="open")
        assert [e["errors"][0]["rule"] for e in open_entries] == ["id_number_check"]
        actions = [r.decoded() for r in await gw.store.audit_entries(limit=1000)
                   if r.decoded()["action"] == "reprocessed"]
        assert sorted(a["detail"]["outcome"] for a in actions) == ["landed", "landed", "still_bad"]
        assert all(a["detail"]["actor"].startswith("os:") for a in actions)  # the OS user ran the command
    finally:
        await gw.stop()
    # Reprocessing again changes nothing for what landed: those entries are resolved.
    again = await gateway_cli("quarantine", "reprocess", "1", "2")
    assert "1: refused" in again.output and "is resolved, not open" in again.output
    listing = await gateway_cli("quarantine", "list", "--state", "all")
    assert "3 of 3 entries, newest first" in listing.output


def test_the_old_deliveries_quarantine_command_still_lists_and_says_it_is_deprecated(tmp_path: Path) -> None:
    config_path = write_gateway_dir(tmp_path)
    shutil.rmtree(tmp_path / "drop")
    (tmp_path / "drop").mkdir()
    result = CliRunner().invoke(main, ["deliveries", "quarantine", "-c", str(config_path)])
    assert result.exit_code == 0
    assert "deprecated; use `gateway quarantine list`" in result.output
    assert "0 of 0 open entries" in result.output

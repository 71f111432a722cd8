"""End to end: files dropped → the gateway on SQLite (and, for the representative paths, PostgreSQL) → records at
a real hall platform on loopback."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys

import pytest
from e2e_site import Site, wait_until

from gateway.app import Gateway
from gateway.demo.counterparts import HallPlatform
from gateway.demo.generate import HALL_CREDIT_CODE, credit_code


async def run_cli(*args: str) -> str:
    """The `gateway` command as an operator runs it beside the running gateway; its output, exit code 0."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    return text


def _store(request: pytest.FixtureRequest, backend: str) -> str:
    """The gateway's store URL: the site's SQLite file, or a fresh database on the tests' PostgreSQL server."""
    return "sqlite:///gateway.db" if backend == "sqlite" else request.getfixturevalue("pg_url")


async def _running(site: Site) -> Gateway:
    gw = Gateway(site.config())
    await gw.start()
    return gw


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_dropped_files_reach_the_hall_platform_with_their_contents(tmp_path, request, backend):
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url, store=_store(request, backend))
        gw = await _running(site)
        try:
            site.drop_cases(120, bad_every=40, per_file=40)
            await wait_until(lambda: hall.unique == 117, what="117 good records at the hall")
            await wait_until(lambda: site.scalar("SELECT count(*) FROM outbox WHERE state='delivered'") == 117,
                             what="deliveries settled")
        finally:
            await gw.stop()
    assert site.scalar("SELECT count(*) FROM quarantine") == 3
    refs = sorted(r[0] for r in site.query("SELECT ref FROM quarantine"))
    assert refs == ["county-0000.xml record 40 (line 42)", "county-0001.xml record 40 (line 42)",
                    "county-0002.xml record 40 (line 42)"]
    # contents: what the hall got is the outbound rendering of what the county sent
    cases = {b["caseNo"]: b for b in hall.records.values()}
    assert len(cases) == 117
    first = cases["3706000000000000"]
    assert first["dataType"] == "CASE"
    assert first["applicantName"]
    assert first["submitTime"][:4] == "2026" and "T" not in first["submitTime"]
    assert first["meta"]["sourceSystem"] == "county_drop"
    # every file was moved to done/ after its records committed
    done = sorted(p.name.split("-", 1)[-1] for p in (tmp_path / "drop/county/done").iterdir())
    assert [d[-15:] for d in done] == ["county-0000.xml", "county-0001.xml", "county-0002.xml"]
    assert hall.repeats == 0


async def test_resent_file_is_recognised_and_not_delivered_again(tmp_path):
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url)
        gw = await _running(site)
        try:
            (path,) = site.drop_cases(30)
            content = (tmp_path / "drop/county").joinpath(path.name)
            await wait_until(lambda: hall.unique == 30, what="first delivery")
            original = next((tmp_path / "drop/county/done").iterdir()).read_bytes()
            content.with_suffix(".again.tmp").write_bytes(original)
            content.with_suffix(".again.tmp").rename(content.with_name("resent.xml"))
            await wait_until(lambda: site.scalar("SELECT value FROM meta WHERE key='count.duplicates'") == "30",
                             what="30 duplicates recorded")
            await asyncio.sleep(0.3)
        finally:
            await gw.stop()
    assert hall.received_raw == 30
    assert site.audit_count("duplicate") == 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_sink_outage_backs_off_loses_nothing_and_drains(tmp_path):
    port = _free_port()
    hall = HallPlatform(port=port)
    site = Site(tmp_path, f"http://127.0.0.1:{port}/api/records", read_timeout=0.3, total_timeout=0.5)
    gw = await _running(site)
    try:
        site.drop_cases(60, per_file=20)
        # 1. connection refused: nothing listens yet; the circuit opens and probes with one delivery at a time
        await wait_until(lambda: (site.scalar("SELECT count(*) FROM outbox WHERE attempts >= 1") or 0) >= 8,
                         what="retries while the hall is down")
        assert site.scalar("SELECT count(*) FROM outbox WHERE state='dead'") == 0
        errors = {r[0] for r in site.query("SELECT last_error FROM outbox WHERE last_error IS NOT NULL")}
        assert any("onnect" in e for e in errors), errors
        # 2. it comes up slow (answers after the read timeout), then 3. with 503s, then healthy
        hall.set_delay(1.0)
        await hall.start()
        await wait_until(lambda: hall.received_raw > 0, what="slow requests reach the hall")
        await asyncio.sleep(0.5)
        hall.fail_next(15, status=503)
        hall.set_delay(0.0)
        await wait_until(lambda: site.scalar("SELECT count(*) FROM outbox WHERE state='delivered'") == 60,
                         timeout=60, what="backlog drained")
    finally:
        await gw.stop()
        await hall.stop()
    assert hall.unique == 60
    assert site.scalar("SELECT count(*) FROM outbox WHERE state='dead'") == 0
    failed = site.audit_count("failed")
    assert failed > 0  # the failures are in the trail, each with its error


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_400_dead_letters_hold_the_case_and_replay_sends_after_the_fix(tmp_path, request, backend):
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url, store=_store(request, backend))
        bad_case = "3706000000000003"
        hall.reject_when(lambda body: isinstance(body, dict) and body.get("caseNo") == bad_case,
                         reason="申请人证件号码 not accepted")
        gw = await _running(site)
        try:
            site.drop_cases(10)
            await wait_until(lambda: hall.unique == 9, what="the nine good records")
            await wait_until(lambda: site.scalar("SELECT count(*) FROM outbox WHERE state='dead'") == 1,
                             what="one dead letter")
            dead = site.query("SELECT id, attempts, last_error FROM outbox WHERE state='dead'")
            assert dead[0][1] == 1  # a 400 is permanent: no retries
            assert "400" in dead[0][2] and "not accepted" in dead[0][2]
            listed = await run_cli("deliveries", "dead", "-c", str(site.config_path))
            assert bad_case in listed
            hall.accept_all()
            dry = await run_cli("deliveries", "replay", "--dry-run", "-c", str(site.config_path))
            assert "would replay 1 deliveries" in dry
            assert site.scalar("SELECT count(*) FROM outbox WHERE state='dead'") == 1
            await run_cli("deliveries", "replay", "-c", str(site.config_path))
            await wait_until(lambda: hall.unique == 10, timeout=10, what="the replayed record")
        finally:
            await gw.stop()
    assert site.audit_count("replayed") == 1
    assert site.audit_count("dead_lettered") == 1


BAD_CSV_HEADER = ("行政相对人名称,行政相对人类别,统一社会信用代码,工商注册号,组织机构代码,法定代表人,法定代表人证件类型,"
                  "法定代表人证件号码,证件类型,证件号码,行政许可决定文书名称,行政许可决定文书号,许可类别,许可证书名称,许可编号,"
                  "许可内容,许可决定日期,有效期自,有效期至,许可机关,许可机关统一社会信用代码,当前状态,数据来源单位,"
                  "数据来源单位统一社会信用代码,备注")


def _licence_row(n: int, *, credit: str, date: str = "2026/09/30") -> str:
    return (f"烟台{n}号药房有限公司,法人及非法人组织,{credit},,,孙立强,,,,,药品经营许可决定书,烟审药许〔2026〕{n:04d}号,普通,"
            f"药品经营许可证,鲁AA{n:07d},经营范围：中成药,{date},{date},2031/09/29,烟台市行政审批服务局,"
            f"{HALL_CREDIT_CODE},1,烟台市行政审批服务局,{HALL_CREDIT_CODE},")


async def test_bad_rows_are_quarantined_with_row_field_and_rule_while_good_rows_land(tmp_path):
    rng = random.Random(3)
    good = [credit_code(rng) for _ in range(4)]
    bad_credit = good[0][:-1] + ("0" if good[0][-1] != "0" else "1")
    lines = [BAD_CSV_HEADER,
             _licence_row(1, credit=good[0]),
             _licence_row(2, credit=good[1]) + ",extra,columns",           # row 2: wrong column count
             _licence_row(3, credit=bad_credit),                           # row 3: invalid credit code
             _licence_row(4, credit=good[2], date="2026/13/45"),           # row 4: bad date
             "UNDECODABLE",                                                 # row 5: bytes GB18030 cannot decode
             _licence_row(6, credit=good[3])]
    data = b"".join((line.encode("gb18030") if line != "UNDECODABLE" else b"\xff\xfe\xfd broken \x80\r") + b"\r\n"
                    for line in lines)
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url)
        (tmp_path / "drop/licences/licences.csv.tmp").write_bytes(data)
        (tmp_path / "drop/licences/licences.csv.tmp").rename(tmp_path / "drop/licences/licences.csv")
        gw = await _running(site)
        try:
            await wait_until(lambda: hall.unique == 2, what="the two good rows at the hall")
            await wait_until(lambda: site.scalar("SELECT count(*) FROM quarantine") == 4, what="four quarantined")
        finally:
            await gw.stop()
    rows = {r[0]: json.loads(r[1]) for r in site.query("SELECT ref, errors FROM quarantine")}
    # quarantine names the line an editor shows: data row N is line N + 1 under the header
    by_line = {ref.split(" line ")[-1]: errs for ref, errs in rows.items()}
    assert set(by_line) == {"3", "4", "5", "6"}, rows
    assert by_line["3"][0]["rule"] == "csv_columns" and "27 columns where the header has 25" in by_line["3"][0]["message"]
    assert by_line["4"][0]["field"] == "counterpart_credit_code" and by_line["4"][0]["rule"].startswith("credit_code")
    assert by_line["5"][0]["field"] in ("decided_on", "valid_from") and "date" in by_line["5"][0]["rule"]
    assert by_line["6"][0]["rule"] == "encoding" and "not valid GB18030" in by_line["6"][0]["message"]
    assert all(ref.startswith("licences.csv line ") for ref in rows)
    assert {b.get("licenceNo") or b.get("decisionNo") for b in hall.records.values()}


async def test_hostile_xml_is_refused_without_resolving_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
           "<APPROVEDATAINFOS><APPROVEDATAINFO><SPSHENQIN><SBLSH>&x;</SBLSH></SPSHENQIN></APPROVEDATAINFO>"
           "</APPROVEDATAINFOS>")
    levels = "".join(
        f'<!ENTITY lol{i} "{("&lol;" if i == 1 else f"&lol{i - 1};") * 10}">' for i in range(1, 10))
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' + levels + "]>"
            "<APPROVEDATAINFOS><APPROVEDATAINFO><SPSHENQIN><SBLSH>&lol9;</SBLSH></SPSHENQIN></APPROVEDATAINFO>"
            "</APPROVEDATAINFOS>")
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url)
        (tmp_path / "drop/county/xxe.xml").write_text(xxe)
        (tmp_path / "drop/county/bomb.xml").write_text(bomb)
        gw = await _running(site)
        try:
            await wait_until(lambda: len(list((tmp_path / "drop/county/error").glob("*.error.txt"))) == 2,
                             what="both files refused with a report")
        finally:
            await gw.stop()
    for report in (tmp_path / "drop/county/error").glob("*.error.txt"):
        text = report.read_text(encoding="utf-8")
        assert "county_drop" in text and ("DTD" in text or "entit" in text)
    assert "TOP-SECRET-VALUE" not in "".join(
        str(r) for r in site.query("SELECT * FROM records") + site.query("SELECT * FROM quarantine"))
    assert hall.received_raw == 0

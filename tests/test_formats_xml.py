"""XML reading: records as dicts, hostile documents refused unread, broken documents reported where they break."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from lxml import etree

from gateway.formats import FileRefused, RawItem, element_to_dict, parse_xml_bytes, read_items, safe_parser

SAMPLES = Path(__file__).parent / "samples" / "files"

# Peak resident memory of the child process in MB.  VmHWM, not ru_maxrss: on Linux a child
# started from pytest reports the parent's peak as its own ru_maxrss.
PEAK_MB = """
def peak_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
RECORD = {"format": "xml", "record": "APPROVEDATAINFO"}


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, str]:
    """A real local file an attacker would like to read through an external entity."""
    value = "TOP-SECRET-7f3a9c-不得外泄"
    path = tmp_path / "secret.txt"
    path.write_text(value, encoding="utf-8")
    return path, value


def xxe_document(secret_path: Path, *, parameter: bool = False) -> bytes:
    url = secret_path.as_uri()
    if parameter:
        dtd = f'<!ENTITY % ext SYSTEM "{url}"> %ext;'
        body = "<SQRMC>x</SQRMC>"
    else:
        dtd = f'<!ENTITY xxe SYSTEM "{url}">'
        body = "<SQRMC>&xxe;</SQRMC>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE DATAS [{dtd}]>\n'
        f"<DATAS><APPROVEDATAINFO>{body}</APPROVEDATAINFO></DATAS>\n"
    ).encode()


def everything_said(items: list[RawItem], exc: BaseException | None) -> str:
    return repr(items) + (str(exc) if exc else "") + repr(getattr(exc, "args", ""))


def test_records_become_dicts_with_namespaces_stripped_and_attributes_repeats_and_cdata_kept() -> None:
    items = list(read_items(SAMPLES / "approvals.xml", RECORD))

    assert [item.ref for item in items] == ["record 1 (line 5)", "record 2 (line 20)", "record 3 (line 32)"]
    first = items[0].payload
    assert first["@seq"] == "1"
    assert first["SPSHENQIN"]["SBLSH"] == "370600202611010001"
    assert first["SPSHOULI"]["SLSJ"] == "2026-11-01 10:00:00"
    second = items[1].payload
    assert second["SPSHENQIN"]["SQRMC"] == "张三 & 李四"
    assert second["SPBANLI"] == [{"SPHJDM": "1", "SPRXM": "王五"}, {"SPHJDM": "2", "SPRXM": "赵六"}]
    assert items[2].payload["SPSHENQIN"]["BZ"] == ""
    assert all(item.error is None for item in items)


def test_raw_is_the_record_element_serialised_on_its_own() -> None:
    items = list(read_items(SAMPLES / "approvals.xml", RECORD))
    element = etree.fromstring(items[0].raw, safe_parser())
    assert element_to_dict(element) == items[0].payload
    assert "烟台市某某食品有限公司".encode() in items[0].raw
    assert b"370600202611010002" not in items[0].raw


def test_element_to_dict_rules() -> None:
    element = etree.fromstring(
        b'<R xmlns:a="urn:a" a:id="9"><A>1</A><B/><C k="v">t</C><D><E>x</E><E>y</E><E>z</E></D>'
        b"<a:F>ns</a:F><G>kept<!-- note -->also</G>mixed</R>"
    )
    assert element_to_dict(element) == {
        "@id": "9",
        "A": "1",
        "B": "",
        "C": {"@k": "v", "#text": "t"},
        "D": {"E": ["x", "y", "z"]},
        "F": "ns",
        "G": "keptalso",
    }
    assert element_to_dict(etree.fromstring(b"<R>only text</R>")) == {"#text": "only text"}


def test_without_record_each_child_of_the_root_is_an_item(tmp_path: Path) -> None:
    path = tmp_path / "rows.xml"
    path.write_bytes(b"<ROWS><ROW><A>1</A><N><M>deep</M></N></ROW><ROW><A>2</A></ROW></ROWS>")
    assert [item.payload for item in read_items(path, {"format": "xml"})] == [
        {"A": "1", "N": {"M": "deep"}},
        {"A": "2"},
    ]


def test_gbk_declared_document_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "gbk.xml"
    path.write_bytes(
        '<?xml version="1.0" encoding="GBK"?><DATAS><REC><MC>烟台</MC></REC></DATAS>'.encode("gbk")
    )
    assert next(read_items(path, {"format": "xml", "record": "REC"})).payload == {"MC": "烟台"}


def test_external_entity_pointing_at_a_local_secret_is_refused_and_the_secret_appears_nowhere(
    tmp_path: Path, secret: tuple[Path, str]
) -> None:
    secret_path, value = secret
    path = tmp_path / "xxe.xml"
    path.write_bytes(xxe_document(secret_path))

    seen: list[RawItem] = []
    with pytest.raises(FileRefused, match="DTD/entity declarations are refused") as refused:
        for item in read_items(path, RECORD):
            seen.append(item)
    assert seen == []
    assert value not in everything_said(seen, refused.value)
    with pytest.raises(FileRefused, match="DTD/entity declarations are refused") as refused_bytes:
        parse_xml_bytes(path.read_bytes())
    assert value not in str(refused_bytes.value)


def test_safe_parser_alone_never_resolves_the_external_entity(secret: tuple[Path, str]) -> None:
    secret_path, value = secret
    root = etree.fromstring(xxe_document(secret_path), safe_parser())
    assert value not in etree.tostring(root, encoding="unicode")
    assert value not in json.dumps(element_to_dict(root), ensure_ascii=False)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_parameter_entity_and_utf16_variants_are_refused(
    tmp_path: Path, secret: tuple[Path, str], encoding: str
) -> None:
    secret_path, value = secret
    document = (
        xxe_document(secret_path, parameter=True)
        .decode()
        .replace('encoding="UTF-8"', f'encoding="{encoding}"')
    )
    path = tmp_path / "pe.xml"
    path.write_bytes(document.encode(encoding))
    with pytest.raises(FileRefused, match="DTD/entity declarations are refused") as refused:
        list(read_items(path, RECORD))
    assert value not in str(refused.value)


def test_doctype_with_external_dtd_is_not_loaded(tmp_path: Path, secret: tuple[Path, str]) -> None:
    secret_path, value = secret
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak SYSTEM "{secret_path.as_uri()}">', encoding="utf-8")
    path = tmp_path / "ext.xml"
    path.write_bytes(
        f'<?xml version="1.0"?><!DOCTYPE DATAS SYSTEM "{dtd.as_uri()}">'
        f"<DATAS><APPROVEDATAINFO><A>&leak;</A></APPROVEDATAINFO></DATAS>".encode()
    )
    try:
        items = list(read_items(path, RECORD))
        failure = None
    except FileRefused as exc:
        items, failure = [], exc
    assert value not in everything_said(items, failure)


def test_billion_laughs_is_refused_fast_with_low_memory() -> None:
    # A fresh interpreter, so its peak RSS is this parse alone.
    script = PEAK_MB + textwrap.dedent(
        f"""
        import json, time
        from pathlib import Path
        from gateway.formats import FileRefused, read_items, parse_xml_bytes
        path = Path({str(SAMPLES / "billion_laughs.xml")!r})
        before = peak_mb()
        start = time.perf_counter()
        outcome = []
        for attempt in (lambda: list(read_items(path, {{"format": "xml", "record": "APPROVEDATAINFO"}})),
                        lambda: parse_xml_bytes(path.read_bytes())):
            try:
                attempt()
                outcome.append("read")
            except FileRefused as exc:
                outcome.append(str(exc))
        seconds = time.perf_counter() - start
        print(json.dumps({{"outcome": outcome, "seconds": seconds, "grown_mb": peak_mb() - before}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout)
    assert all("DTD/entity declarations are refused" in text for text in result["outcome"]), result
    assert result["seconds"] < 1.0, result
    assert result["grown_mb"] < 5, result


def test_quadratic_blowup_entity_is_refused(tmp_path: Path) -> None:
    big = "x" * 100_000
    path = tmp_path / "quad.xml"
    path.write_bytes(
        (
            f'<!DOCTYPE D [<!ENTITY a "{big}">]><D><APPROVEDATAINFO><A>'
            + "&a;" * 10_000
            + "</A></APPROVEDATAINFO></D>"
        ).encode()
    )
    start = time.perf_counter()
    with pytest.raises(FileRefused):
        list(read_items(path, RECORD))
    assert time.perf_counter() - start < 1.0


def test_malformed_document_yields_records_before_the_break_then_one_error_with_line_and_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "broken.xml"
    records = "".join(f"<APPROVEDATAINFO><SBLSH>{i}</SBLSH></APPROVEDATAINFO>\n" for i in range(1, 6))
    path.write_bytes(
        f"<DATAS>\n{records}<APPROVEDATAINFO><SBLSH>6</SBLS></APPROVEDATAINFO>\n</DATAS>".encode()
    )

    items = list(read_items(path, RECORD))

    assert [item.payload["SBLSH"] for item in items[:5]] == ["1", "2", "3", "4", "5"]
    assert len(items) == 6
    error = items[5]
    assert error.payload is None and error.ref == "line 7 column 33"
    assert error.error.startswith("XML is not well-formed at line 7, column 33: ")
    assert "5 records before it" in error.error


def test_truncated_file_reports_the_break(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    path.write_bytes(b"<DATAS><APPROVEDATAINFO><A>1</A></APPROVEDATAINFO><APPROVEDATAINFO><A>2")
    items = list(read_items(path, RECORD))
    assert items[0].payload == {"A": "1"}
    assert items[1].error and "not well-formed" in items[1].error


def test_wrong_record_tag_refuses_the_file_instead_of_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "other.xml"
    path.write_bytes(b"<DATAS><CASE><A>1</A></CASE></DATAS>")
    with pytest.raises(FileRefused, match=r"no <APPROVEDATAINFO> element.*<CASE>.*input.record"):
        list(read_items(path, RECORD))


def test_empty_batch_document_has_no_items(tmp_path: Path) -> None:
    path = tmp_path / "empty.xml"
    path.write_bytes(b'<?xml version="1.0"?><DATAS/>')
    assert list(read_items(path, RECORD)) == []


def test_parse_xml_bytes_parses_a_harmless_body() -> None:
    root = parse_xml_bytes("<RESULT><STATUS>0</STATUS><DESC>成功</DESC></RESULT>".encode())
    assert element_to_dict(root) == {"STATUS": "0", "DESC": "成功"}
    with pytest.raises(etree.XMLSyntaxError):
        parse_xml_bytes(b"<RESULT><STATUS>0</RESULT>")


def write_big_xml(path: Path, records: int) -> None:
    with open(path, "wb") as handle:
        handle.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<DATAS>\n')
        for i in range(records):
            fields = "".join(f"<F{j:02d}>值{i}-{j}</F{j:02d}>" for j in range(25))
            handle.write(f"<APPROVEDATAINFO>{fields}</APPROVEDATAINFO>\n".encode())
        handle.write(b"</DATAS>\n")


@pytest.mark.slow
def test_xml_reads_100000_records_in_constant_memory_and_reports_its_speed(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    write_big_xml(path, 100_000)
    script = PEAK_MB + textwrap.dedent(
        f"""
        import json, time
        from pathlib import Path
        from gateway.formats import read_items
        before = peak_mb()
        start = time.perf_counter()
        count = sum(1 for _ in read_items(Path({str(path)!r}), {{"format": "xml", "record": "APPROVEDATAINFO"}}))
        seconds = time.perf_counter() - start
        print(json.dumps({{"count": count, "seconds": seconds, "peak_mb": peak_mb(), "grown_mb": peak_mb() - before}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(done.stdout)
    size_mb = path.stat().st_size / 1e6
    print(
        f"\nread_items XML: {result['count']:,} records x 25 fields ({size_mb:.0f} MB) in {result['seconds']:.2f}s "
        f"= {result['count'] / result['seconds']:,.0f} records/s, peak RSS {result['peak_mb']:.0f} MB "
        f"(+{result['grown_mb']:.1f} MB while reading)"
    )
    assert result["count"] == 100_000
    assert result["grown_mb"] < size_mb / 4  # the document is never held whole

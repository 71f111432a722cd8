"""CSV reading: encodings seen in Windows exports, Chinese headers, and bad rows that stay single bad items."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from gateway.formats import FileRefused, RawItem, read_items
from gateway.formats import _items as items_module
from gateway.formats._csv import detect_encoding

SAMPLES = Path(__file__).parent / "samples" / "files"
HEADER = ["申办流水号", "事项编码", "申请人类型", "申请人名称", "申报时间", "版本"]


def read(path: Path, **options) -> list[RawItem]:
    return list(read_items(path, {"format": "csv", **options}))


@pytest.mark.parametrize("sample", ["cases_gb18030.csv", "cases_utf8_bom.csv", "cases_utf8.csv"])
def test_each_windows_export_encoding_reads_the_same_cases_with_chinese_headers(sample: str) -> None:
    items = read(SAMPLES / sample)

    # refs are the lines an editor shows: the header is line 1, the second row spans lines 3 and 4
    assert [item.ref for item in items] == ["line 2", "line 3", "line 5"]
    assert all(item.error is None for item in items)
    assert list(items[0].payload) == HEADER  # no BOM glued to the first column name
    assert items[0].payload["申请人名称"] == "烟台市某某食品有限公司"
    assert items[1].payload["申请人名称"].splitlines() == ["张三", "（代办）"]
    assert items[2].payload["申请人名称"] == '某某"商贸"有限公司'
    assert items[2].payload["版本"] == "2"


def test_raw_is_the_rows_own_bytes_without_line_ending() -> None:
    items = read(SAMPLES / "cases_gb18030.csv")
    assert items[
        0
    ].raw == "370600202611010001,1100000001,2,烟台市某某食品有限公司,2026-11-01 09:30:00,1".encode("gb18030")
    assert items[1].raw.endswith('（代办）",20261101100000,1'.encode("gb18030"))


def test_bad_rows_become_error_items_and_their_neighbours_still_parse(tmp_path: Path) -> None:
    header = ",".join(f"列{i}" for i in range(1, 26)) + "\r\n"
    good = [",".join(f"值{row}-{col}" for col in range(1, 26)) + "\r\n" for row in range(1, 21)]
    data = bytearray(header.encode("gb18030"))
    offsets: dict[int, int] = {}
    for number, line in enumerate(good, start=1):
        if number == 17:
            line = ",".join(f"值{number}-{col}" for col in range(1, 28)) + "\r\n"  # 27 columns
        encoded = line.encode("gb18030")
        if number == 9:
            cut = encoded.index(b",") + 3
            encoded = encoded[:cut] + b"\xff" + encoded[cut:]  # 0xFF never occurs in GB18030
            offsets[9] = len(data) + cut
        data += encoded
    path = tmp_path / "export.csv"
    path.write_bytes(bytes(data))

    items = read(path)

    assert len(items) == 20
    errors = {item.ref: item.error for item in items if item.error}
    # data row 17 is line 18 of the file, data row 9 line 10
    assert errors["line 18"] == (
        "line 18 has 27 columns where the header has 25: 2 extra values after the last column '列25' "
        "(columns 26–27); an unquoted delimiter inside a value shifts the columns after it"
    )
    assert {item.rule for item in items if item.error} == {"csv_columns", "encoding"}
    assert set(errors) == {"line 10", "line 18"}
    assert f"byte offset {offsets[9]}" in errors["line 10"] and errors["line 10"].startswith("line 10: ")
    assert data[offsets[9]] == 0xFF
    assert "GB18030" in errors["line 10"]
    good_items = [item for item in items if item.error is None]
    assert len(good_items) == 18
    assert good_items[7].ref == "line 9" and good_items[8].ref == "line 11"
    assert good_items[8].payload["列1"] == "值10-1"
    assert all(item.payload is None for item in items if item.error)
    assert items[16].raw.startswith("值17-1,".encode("gb18030"))


def test_undecodable_utf8_row_is_an_error_naming_row_and_offset(tmp_path: Path) -> None:
    data = "名称,数量\n甲,1\n".encode() + b"\xe4\xb8,2\n" + "丙,3\n".encode()
    path = tmp_path / "u.csv"
    path.write_bytes(data)

    items = read(path)

    assert [(item.ref, item.error is None) for item in items] == [
        ("line 2", True),
        ("line 3", False),
        ("line 4", True),
    ]
    bad_offset = data.index(b"\xe4\xb8,")
    assert f"byte offset {bad_offset}" in items[1].error
    assert "UTF-8" in items[1].error
    assert items[2].payload == {"名称": "丙", "数量": "3"}


def test_auto_encoding_decides_by_chinese_header_then_by_a_vote_of_the_rows() -> None:
    assert detect_encoding(b"\xef\xbb\xbfa,b\n") == "utf-8-sig"
    assert detect_encoding("名称,数量\n".encode()) == "utf-8"
    assert detect_encoding("名称,数量\n".encode("gb18030")) == "gb18030"
    ascii_header = b"name,count\n"
    assert detect_encoding(ascii_header + "甲,1\n乙,2\n".encode("gb18030")) == "gb18030"
    # One broken row in a UTF-8 file must not turn the whole file into mojibake.
    assert detect_encoding(ascii_header + "甲,1\n乙,2\n".encode() + b"\xff,3\n") == "utf-8"
    assert detect_encoding(ascii_header + b"a,1\n") == "utf-8"


def test_ascii_header_with_gb18030_rows_is_read_as_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"SBLSH,SQRMC\r\n" + "1,烟台市某某食品有限公司\r\n2,张三\r\n".encode("gb18030"))
    assert [item.payload["SQRMC"] for item in read(path)] == ["烟台市某某食品有限公司", "张三"]


def test_explicit_encoding_that_does_not_fit_the_header_refuses_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("名称,数量\r\n甲,1\r\n".encode("gb18030"))
    with pytest.raises(FileRefused, match="header row cannot be decoded.*input.encoding"):
        read(path, encoding="utf-8")
    assert read(path, encoding="GBK")[0].payload == {"名称": "甲", "数量": "1"}


def test_delimiter_is_configurable_even_when_gb18030_bytes_contain_it(tmp_path: Path) -> None:
    # Some GB18030 characters have 0x7C ('|') as their second byte; splitting bytes on it would break them.
    tricky = next(chr(c) for c in range(0x4E00, 0x9FA5) if b"|" in chr(c).encode("gb18030"))
    path = tmp_path / "pipe.csv"
    path.write_bytes(f'名称|备注\r\n{tricky}公司|"a|b"\r\n'.encode("gb18030"))
    assert read(path, delimiter="|", encoding="gb18030") == [
        RawItem({"名称": f"{tricky}公司", "备注": "a|b"}, "line 2", f'{tricky}公司|"a|b"'.encode("gb18030"))
    ]
    tab = tmp_path / "tab.csv"
    tab.write_bytes(b"a\tb\n1\t2\n")
    assert read(tab, delimiter="\\t")[0].payload == {"a": "1", "b": "2"}


def test_blank_lines_are_not_rows_but_still_count_as_lines_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\r\na,b\r\n\r\n1,2\r\n\r\n3,4\r\n")
    assert [(item.ref, item.payload) for item in read(path)] == [
        ("line 4", {"a": "1", "b": "2"}),
        ("line 6", {"a": "3", "b": "4"}),
    ]


def test_without_header_keys_are_column_numbers_and_the_first_row_sets_the_width(tmp_path: Path) -> None:
    path = tmp_path / "nohdr.csv"
    path.write_bytes(b"1,2,3\n4,5\n")
    items = read(path, header=False)
    assert items[0].payload == {"1": "1", "2": "2", "3": "3"}
    assert items[1].error == (
        "line 2 has 2 columns where the first row has 3: no value for 3; a lost delimiter or a line break "
        "inside an unquoted value shifts the columns after it"
    )
    assert items[1].rule == "csv_columns" and items[1].field == "3"


def test_header_problems_refuse_the_whole_file(tmp_path: Path) -> None:
    duplicate = tmp_path / "dup.csv"
    duplicate.write_bytes("名称,名称\n1,2\n".encode())
    with pytest.raises(FileRefused, match="names column '名称' twice"):
        read(duplicate)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("a,b\n1,2\n".encode("utf-16"))
    with pytest.raises(FileRefused, match="UTF-16"):
        read(utf16)
    with pytest.raises(FileRefused, match="delimiter"):
        read(duplicate, delimiter=";;")


def test_empty_header_cells_get_column_numbers(tmp_path: Path) -> None:
    path = tmp_path / "trailing.csv"
    path.write_bytes(b"a,b,\n1,2,\n")
    assert read(path)[0].payload == {"a": "1", "b": "2", "column 3": ""}


def test_an_oversized_line_is_one_error_item_not_a_memory_spike(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(items_module, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "long.csv"
    path.write_bytes(b"a,b\n1,2\n" + b"x" * 5000 + b",y\n3,4\n")
    items = read(path)
    assert [item.ref for item in items] == ["line 2", "line 3", "line 4"]
    assert "longer than 1000 bytes" in items[1].error
    assert items[2].payload == {"a": "3", "b": "4"}


def test_unterminated_quote_does_not_swallow_unbounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    body = b'a,b\n1,"open\n' + b"".join(b"%d,%d\n" % (i, i) for i in range(40_000))
    path.write_bytes(body)
    items = read(path)
    # The runaway field is cut at the csv module's field limit (128 KiB) and reported...
    assert items[0].ref == "line 2" and "line 2 is not valid CSV: field larger than field limit" in items[0].error
    assert items[0].rule == "csv_syntax"
    assert len(items[0].raw) < 200_000
    # ...and reading picks up again on the following lines.
    assert items[-1].payload == {"a": "39999", "b": "39999"}


def test_csv_is_streamed_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    header = ",".join(f"字段{i}" for i in range(25)) + "\r\n"
    with open(path, "wb") as handle:
        handle.write(header.encode("gb18030"))
        row = (",".join(f"值{i}" for i in range(25)) + "\r\n").encode("gb18030")
        for _ in range(40_000):
            handle.write(row)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_items(path, {"format": "csv"}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 40_000
    assert peak < 2 * 1024 * 1024 < size

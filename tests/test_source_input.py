"""Per-source reader options in gateway.toml ([sources.NAME] input = {…}), used wherever that source reads."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from click.testing import CliRunner
from e2e_site import wait_until

from gateway.app import Gateway, build
from gateway.cli import main
from gateway.config import load_config
from gateway.shipped import copy_shipped_mappings

REPO = Path(__file__).resolve().parents[1]
XK_SAMPLE = REPO / "tests" / "samples" / "mapping" / "shuanggongshi_xk.csv"  # GB18030, as the mapping declares


def site(tmp_path: Path, source_extra: str = "", adapter: str = "push", drop: bool = False) -> Path:

    copy_shipped_mappings(tmp_path / "mappings")
    where = ""
    if drop:
        (tmp_path / "drop").mkdir()
        where = 'path = "drop"\nstability_seconds = 0.05\npoll_interval = 0.05\n'
    config = tmp_path / "gateway.toml"
    config.write_text(textwrap.dedent(f"""\
        [gateway]
        store = "sqlite:///gateway.db"
        adapters = ["push", "filedrop"]

        [api]
        enabled = false

        [supervision]
        enabled = false

        [sources.credit]
        adapter = "{adapter}"
        mapping = "mappings/shuanggongshi_xk.in.yaml"
        """) + where + source_extra + "\n", encoding="utf-8")
    return config


def utf8_export(path: Path, *, bom: bool = False, delimiter: str = ",") -> Path:
    """The licence list as another export tool writes it: UTF-8, maybe a BOM, maybe another delimiter."""
    text = XK_SAMPLE.read_bytes().decode("gb18030")
    if delimiter != ",":
        text = text.replace(",", delimiter)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def ingest(config: Path, file: Path) -> dict:
    result = CliRunner().invoke(main, ["ingest", "-c", str(config), "--again", str(file)])
    return json.loads(result.output.strip().splitlines()[-1])


def test_a_utf8_export_for_a_gb18030_mapping_needs_the_sources_encoding_override(tmp_path: Path) -> None:
    export = utf8_export(tmp_path / "xk.csv")
    plain = tmp_path / "plain"
    plain.mkdir()
    # read as GB18030 the UTF-8 header does not even decode: the file is refused, saying where to fix it
    refused = ingest(site(plain), export)["refused"]
    assert "header row cannot be decoded" in refused and "under the source in gateway.toml" in refused
    overridden = tmp_path / "overridden"
    overridden.mkdir()
    summary = ingest(site(overridden, 'input = {encoding = "utf-8"}'), export)
    assert summary["accepted"] == 4 and "quarantined" not in summary


def test_a_bom_file_lands_through_the_per_source_override_and_through_the_bom_alone(tmp_path: Path) -> None:
    export = utf8_export(tmp_path / "xk.csv", bom=True)
    for name, extra in (("override", 'input = {encoding = "utf-8-sig"}'), ("bom", "")):
        root = tmp_path / name
        root.mkdir()
        assert ingest(site(root, extra), export)["accepted"] == 4


def test_a_semicolon_export_needs_the_delimiter_override(tmp_path: Path) -> None:
    export = utf8_export(tmp_path / "xk.csv", delimiter=";")
    config = site(tmp_path, 'input = {encoding = "utf-8", delimiter = ";"}')
    assert build(load_config(config)).inbound["credit"].input == {
        "format": "csv", "encoding": "utf-8", "delimiter": ";", "header": True
    }
    assert ingest(config, export)["accepted"] == 4


async def test_the_file_drop_reads_with_the_sources_override(tmp_path: Path) -> None:
    config = site(tmp_path, 'input = {encoding = "utf-8"}', adapter="filedrop", drop=True)
    gw = Gateway(load_config(config), run_delivery=False)
    await gw.start()
    try:
        assert gw.sources  # the file drop runs with SystemContext.input_options() = the merged block
        export = utf8_export(tmp_path / "xk.csv.tmp")
        export.rename(tmp_path / "drop" / "xk.csv")
        assert gw.store is not None
        store = gw.store
        await wait_until(lambda: store.list_records(kind="approval_result"), what="the licences")
        await wait_until(lambda: (tmp_path / "drop" / "done").exists() and any((tmp_path / "drop" / "done").iterdir()),
                         what="the file in done/")
        rows = await store.list_records(kind="approval_result")
        assert len(rows) == 4 and rows[0]["record"]["data"]["authority"] == "烟台市行政审批服务局"
        assert await store.list_quarantine() == []
    finally:
        await gw.stop()

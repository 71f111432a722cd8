"""The generated references: docs/reference/ says what the code says, and `gateway docs` prints it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.reference import REFERENCE_FILES, REGENERATE, config_reference, schema_reference

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"
GENERATORS = {"config": config_reference, "schema": schema_reference}


@pytest.mark.parametrize("filename", sorted(REFERENCE_FILES))
def test_committed_reference_matches_the_code(filename: str) -> None:
    committed = (REFERENCE / filename).read_text(encoding="utf-8")
    generated = GENERATORS[REFERENCE_FILES[filename]]()
    assert committed == generated, (
        f"docs/reference/{filename} is out of date with the code: run `{REGENERATE}` and commit the result")


def test_configuration_reference_names_types_defaults_units_and_old_names() -> None:
    text = config_reference()
    # a duration shows its default in the duration syntax, and a renamed key its old name
    assert '| `lease` | duration | `"1m"` | `lease_seconds` |' in text
    assert '| `seal_every` | duration | `"5m"` | `seal_every_seconds` |' in text
    assert "| `store` | string | `\"sqlite:///gateway.db\"` |" in text
    # every section, the supervision thresholds and each installed adapter's own keys
    for heading in ("## `[gateway]`", "## `[delivery]`", "## `[api]`", "### `[supervision.rules]`", "## `[audit]`",
                    "## `[exchange.counterparts.<name>.watch]`", "## `[[exchange.parallel.departments]]`",
                    "## `[[routes]]`", '## `[sources.<name>]` with `adapter = "rest"`',
                    '## `[sinks.<name>]` with `adapter = "soap"`', '## `[sources.<name>]` with `adapter = "filedrop"`'):
        assert heading in text, heading
    assert '| `stable_for` | duration | `"1s"` | `stability_seconds` |' in text


def test_schema_reference_lists_every_kind_field_and_code_table() -> None:
    from gateway.schema import KINDS, code_tables

    text = schema_reference()
    for name, kind in KINDS.items():
        assert f"### {name}\n" in text
        for field in kind.fields:
            assert f"| `{field.name}` | {field.title} |" in text, (name, field.name)
    for table_id in code_tables():
        assert f"### table-{table_id}\n" in text
    assert "| `applicant_id_no` | 申请人证件号码 | SQRZJHM | id_number | yes |  | yes |" in text


def test_gateway_docs_prints_and_writes_the_references(tmp_path) -> None:
    runner = CliRunner()
    printed = runner.invoke(main, ["docs", "config"])
    assert printed.exit_code == 0 and printed.output == config_reference()
    written = runner.invoke(main, ["docs", "write", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REFERENCE_FILES)
    assert (tmp_path / "schema.md").read_text(encoding="utf-8") == schema_reference()

"""The reconciliation side of the SDK and the shipped adapters: the manifest contract, digests, a front-end
machine's daily manifest files."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.adapters import (
    CounterpartManifest,
    ManifestEntry,
    ManifestUnavailable,
    ReconcilePeriod,
    manifest_digest,
    validate_config,
)
from gateway_adapters.filedrop import ADAPTER as FILEDROP

CHINA = timezone(timedelta(hours=8))


def test_the_digest_is_the_same_for_the_bytes_the_text_and_a_structure_written_canonically():
    body = {"b": "中文", "a": 1}
    canonical = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert manifest_digest(body) == manifest_digest(canonical) == manifest_digest(canonical.encode("utf-8"))
    assert manifest_digest({"a": 1, "b": "中文"}) == manifest_digest(body)  # key order does not matter
    assert manifest_digest(body).startswith("sha256:") and len(manifest_digest(body)) == 71


def test_a_manifest_in_the_contract_and_what_is_wrong_with_one_that_is_not():
    data = {"received": [{"key": "k1", "digest": "sha256:00", "at": "2026-11-29T10:00:00+08:00"}],
            "sent": [{"kind": "supervision_result", "key": "D1", "version": "2"}], "can_resend": True}
    m = CounterpartManifest.from_json(data)
    assert m.received == [ManifestEntry("k1", "sha256:00", "2026-11-29T10:00:00+08:00")]
    assert m.sent == [ManifestEntry("D1", kind="supervision_result", version=2)] and m.can_resend
    assert CounterpartManifest.from_json(m.as_json()) == m
    assert CounterpartManifest.from_json({}).received is None  # "cannot say" is not "nothing"
    for bad, why in (([], "expected a JSON object"), ({"received": {}}, "'received' is not a list"),
                     ({"sent": [{"kind": "x"}]}, "sent[0] has no key"),
                     ({"sent": [{"key": "D", "version": "two"}]}, "is not a whole number")):
        with pytest.raises(ManifestUnavailable, match=re.escape(why)):
            CounterpartManifest.from_json(bad, where="test")


async def test_the_file_drop_sink_reads_the_days_of_the_period_and_only_welcomes_the_margin(tmp_path: Path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    config = validate_config(FILEDROP.sink_config, {"path": "out", "reconcile": {"manifests": "manifests"}}, tmp_path)
    sink = FILEDROP.make_sink("county_out", config)
    await sink.start()
    period = ReconcilePeriod("county", datetime(2026, 11, 29, tzinfo=CHINA), datetime(2026, 11, 30, tzinfo=CHINA),
                             margin=300)
    with pytest.raises(ManifestUnavailable, match="has not written .*manifest-20261129.json"):
        await sink.reconcile_manifest(period)
    (manifests / "manifest-20261129.json").write_text(json.dumps(
        {"received": [{"key": "a", "at": "2026-11-29T09:00:00+08:00"}], "sent": []}), encoding="utf-8")
    (manifests / "manifest-20261130.json").write_text(json.dumps(
        {"received": [{"key": "b", "at": "2026-11-30T00:01:00+08:00"}]}), encoding="utf-8")
    got = await sink.reconcile_manifest(period)  # 28 Nov is only in the margin: not required
    assert [e.key for e in got.received or []] == ["a", "b"] and got.can_resend
    assert await sink.request_resend(period, [ManifestEntry("D1", kind="supervision_result", version=1)]) == 1
    (request,) = (tmp_path / "out").glob("resend-*.json")
    assert json.loads(request.read_text())["entries"] == [{"kind": "supervision_result", "key": "D1", "version": 1}]
    await sink.close()

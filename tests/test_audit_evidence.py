"""Case evidence bundles, checked by the standalone offline verifier on its own, after the database is gone."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

from test_audit import fill, fill_to

from gateway.audit import Sealer, export_case, generate_seal_key, load_local_signer, load_or_create_dev_signer
from gateway.store.sqlite import SqliteStore

OFFLINE = Path(__file__).resolve().parents[1] / "gateway" / "audit" / "offline_verify.py"
# Run the copied verifier so that importing anything from the gateway would fail.
_GUARD = ("import sys, runpy; sys.modules['gateway'] = None; sys.argv = ['offline_verify.py'] + sys.argv[1:]; "
          "runpy.run_path('offline_verify.py', run_name='__main__')")


def offline_verify(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Copy offline_verify.py alone into ``where`` and run it there with a clean environment."""
    shutil.copy(OFFLINE, where / "offline_verify.py")
    return subprocess.run([sys.executable, "-I", "-c", _GUARD, *args], cwd=where, env={}, capture_output=True,
                          text=True, timeout=120)


async def _case_bundle(store: SqliteStore, tmp_path: Path, *, seal: bool = True) -> Path:
    signer = load_or_create_dev_signer(tmp_path / "certs")
    await fill_to(store, 800, cases=7)
    if seal:
        await Sealer(store, signer, max_entries=120).seal_now()
    out = tmp_path / "out" / "evidence-C3.json"
    summary = await export_case(store, "C3", out)
    assert summary.entries == len(await store.audit_case_seqs("C3")) > 50
    return out


def test_offline_verifier_needs_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(OFFLINE.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots - set(sys.stdlib_module_names) - {"__future__"} == {"cryptography"}


async def test_bundle_verifies_offline_after_the_database_is_deleted(store, tmp_path) -> None:
    bundle = await _case_bundle(store, tmp_path)
    await store.close()
    for f in tmp_path.glob("g.db*"):
        f.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(bundle, elsewhere / "bundle.json")
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", elsewhere / "trusted.crt")
    result = offline_verify(elsewhere, "bundle.json", "--cert", "trusted.crt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERDICT: VERIFIED" in result.stdout
    assert result.stdout.count("proven by signed seal") == len(json.loads(bundle.read_text())["entries"]) > 50


async def test_bundle_with_one_byte_changed_fails_offline(store, tmp_path) -> None:
    bundle = await _case_bundle(store, tmp_path)
    data = json.loads(bundle.read_text(encoding="utf-8"))
    target = data["entries"][5]
    text = bundle.read_text(encoding="utf-8")
    body_json = json.dumps(target["body"], ensure_ascii=False)
    assert text.count(body_json) == 1
    changed = body_json.replace('"county', '"countx', 1)
    assert len(changed) == len(body_json) and changed != body_json
    bundle.write_text(text.replace(body_json, changed), encoding="utf-8")
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "out" / "trusted.crt")
    result = offline_verify(tmp_path / "out", bundle.name, "--cert", "trusted.crt")
    assert result.returncode == 1, result.stdout
    assert f"FAIL entry {target['seq']}: hash does not match its body" in result.stdout
    assert "VERDICT: FAILED" in result.stdout


async def test_bundle_with_a_changed_seal_signature_or_statement_fails_offline(store, tmp_path) -> None:
    bundle = await _case_bundle(store, tmp_path)
    original = json.loads(bundle.read_text(encoding="utf-8"))
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "out" / "trusted.crt")

    sig = original["seals"][1]["signature"]
    flipped = ("B" if sig[0] != "B" else "C") + sig[1:]
    data = json.loads(json.dumps(original))
    data["seals"][1]["signature"] = flipped
    bundle.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = offline_verify(tmp_path / "out", bundle.name, "--cert", "trusted.crt")
    assert result.returncode == 1
    assert f"FAIL seal {original['seals'][1]['seal']}: signature invalid" in result.stdout

    data = json.loads(json.dumps(original))
    data["seals"][0]["statement"] = data["seals"][0]["statement"].replace('"count":120', '"count":121')
    bundle.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = offline_verify(tmp_path / "out", bundle.name, "--cert", "trusted.crt")
    assert result.returncode == 1
    assert f"FAIL seal {original['seals'][0]['seal']}: signature invalid" in result.stdout


async def test_a_bundle_signed_by_another_key_fails_against_the_trusted_certificate(store, tmp_path) -> None:
    bundle = await _case_bundle(store, tmp_path)
    generate_seal_key(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "audit-seal.crt", tmp_path / "out" / "trusted.crt")
    result = offline_verify(tmp_path / "out", bundle.name, "--cert", "trusted.crt")
    assert result.returncode == 1
    assert "which is not a trusted certificate" in result.stdout


async def test_without_a_trusted_certificate_the_verdict_says_the_signer_is_not_confirmed(store, tmp_path) -> None:
    bundle = await _case_bundle(store, tmp_path)
    result = offline_verify(tmp_path / "out", bundle.name)
    assert result.returncode == 2
    assert "SIGNER NOT CONFIRMED" in result.stdout and "SHA-256 fingerprint" in result.stdout


async def test_entries_not_yet_sealed_make_the_bundle_incomplete_not_failed(store, tmp_path) -> None:
    signer = load_or_create_dev_signer(tmp_path / "certs")
    await fill(store, 40, cases=4)
    (seal,) = await Sealer(store, signer).seal_now()
    await fill(store, 8, start=40, cases=4)  # the newest entries of C1 are not sealed yet
    out = tmp_path / "out" / "b.json"
    summary = await export_case(store, "C1", out)
    seqs = await store.audit_case_seqs("C1")
    unsealed = len([q for q in seqs if q > seal.to_seq])
    assert summary.unsealed == unsealed > 0 and summary.provable == len(seqs) - unsealed > 0
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "out" / "trusted.crt")
    result = offline_verify(tmp_path / "out", "b.json", "--cert", "trusted.crt")
    assert result.returncode == 2, result.stdout
    assert "VERDICT: INCOMPLETE" in result.stdout and "NOT YET SEALED" in result.stdout


async def test_ecdsa_p256_sealed_bundle_verifies_offline(store, tmp_path) -> None:
    generate_seal_key(tmp_path / "certs", "ecdsa-p256-sha256")
    signer = load_local_signer(tmp_path / "certs")
    assert signer.algorithm == "ecdsa-p256-sha256"
    await fill(store, 30, cases=3)
    await Sealer(store, signer).seal_now()
    out = tmp_path / "out" / "b.json"
    await export_case(store, "C2", out)
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "out" / "trusted.crt")
    result = offline_verify(tmp_path / "out", "b.json", "--cert", "trusted.crt", "--quiet")
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("VERDICT: VERIFIED")


async def test_sm3_bundle_verifies_offline(tmp_path) -> None:
    s = SqliteStore(tmp_path / "sm3.db", audit_algorithm="sm3")
    await s.open()
    try:
        signer = load_or_create_dev_signer(tmp_path / "certs")
        await fill(s, 50, cases=5)
        await Sealer(s, signer, max_entries=40).seal_now()
        out = tmp_path / "out" / "b.json"
        await export_case(s, "C4", out)
    finally:
        await s.close()
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "out" / "trusted.crt")
    result = offline_verify(tmp_path / "out", "b.json", "--cert", "trusted.crt")
    assert result.returncode == 0, result.stdout
    assert "hash sm3" in result.stdout

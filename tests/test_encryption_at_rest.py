"""Encryption at rest of personal fields: sealed in the stored body at ingest (push and file helper process
alike), opened for delivery and readers, bound to its record and field, idempotency and case queries intact,
keys rotated with `gateway encryption keygen / reencrypt / status`, and turned off again with `decrypt`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner
from test_api_support import ID_NO, PHONE, PUSH_AUTH, case_item, token_for, write_gateway_dir

from gateway.app import Gateway, build
from gateway.cli import main
from gateway.config import ConfigError, load_config
from gateway.demo.generate import generate_items, write_xml_file
from gateway.pipeline.fileingest import ingest_file
from gateway.pipeline.ingest import Ingestor
from gateway.security.fieldcrypt import (
    AES_256_GCM,
    SM4_GCM,
    FieldCipher,
    FieldCryptError,
    Place,
    new_key_line,
    parse_keyring,
)
from gateway.store.sqlite import SqliteStore

PUSH = "/api/v1/inbound/hall_platform/case"


def keyring(*lines: str) -> dict[str, bytes]:
    return parse_keyring("\n".join(lines), where="test keyring")


@pytest.mark.parametrize("algorithm", [AES_256_GCM, SM4_GCM])
def test_a_sealed_field_opens_only_in_its_own_record_and_field(algorithm) -> None:
    cipher = FieldCipher(keyring(new_key_line(algorithm, "k1")), algorithm)
    place = Place("hall_platform", "case", "HP-1", 2)
    data = cipher.seal_data(place, {"case_no": "HP-1", "applicant_id_no": ID_NO, "contact_phone": PHONE,
                                    "contact_address": None, "applicant_name": "张三"})
    assert data["case_no"] == "HP-1" and data["applicant_name"] == "张三" and data["contact_address"] is None
    sealed = data["applicant_id_no"]["$enc"]
    assert sealed.startswith(f"v1:{algorithm}:k1:") and ID_NO not in sealed
    record = {"kind": "case", "data": data, "provenance": {"source_system": "hall_platform", "source_id": "HP-1",
                                                           "source_version": 2}}
    assert cipher.open_record(record)["data"]["applicant_id_no"] == ID_NO

    moved = {**record, "data": {**data, "contact_phone": data["applicant_id_no"]}}  # swapped between fields
    with pytest.raises(FieldCryptError, match="contact_phone .* changed or moved"):
        cipher.open_record(moved)
    other = {**record, "provenance": {**record["provenance"], "source_id": "HP-2"}}  # moved to another record
    with pytest.raises(FieldCryptError, match="changed or moved"):
        cipher.open_record(other)


@pytest.mark.parametrize("value", ["11010519491231002X", 'quote " and \\ backslash', "张三\n第二行", 13812345678,
                                   {"nested": [1, "二"]}])
def test_values_come_back_with_their_type_and_every_character(value) -> None:
    cipher = FieldCipher(keyring(new_key_line(AES_256_GCM, "k1")))
    place = Place("s", "case", "K", 1)
    assert cipher.open_value(cipher.seal_value(value, place, "contact_address"), place, "contact_address") == value


def test_a_key_missing_from_the_keyring_is_named() -> None:
    old = FieldCipher(keyring(new_key_line(AES_256_GCM, "2025")))
    place = Place("s", "case", "K", 1)
    value = old.seal_value(ID_NO, place, "applicant_id_no")
    new = FieldCipher(keyring(new_key_line(AES_256_GCM, "2026")))
    with pytest.raises(FieldCryptError, match="key '2025', which is not in the keyring"):
        new.open_value(value, place, "applicant_id_no")


def test_keyrings_that_cannot_work_are_refused_with_the_reason() -> None:
    with pytest.raises(FieldCryptError, match="32, SM4-GCM 16"):
        parse_keyring("k1 " + "QUFB", where="x")
    with pytest.raises(FieldCryptError, match="appears twice"):
        parse_keyring("\n".join([new_key_line(AES_256_GCM, "a")] * 2), where="x")
    with pytest.raises(FieldCryptError, match="sm4-gcm needs 16"):
        FieldCipher(keyring(new_key_line(AES_256_GCM, "a")), SM4_GCM)


# --------------------------------------------------------------------------- a running gateway


def _site(root: Path, *, algorithm: str = AES_256_GCM) -> Path:
    config = write_gateway_dir(root)
    keys = root / "secrets" / "field-keys"
    keys.parent.mkdir()
    keys.write_text(new_key_line(algorithm, "k2026a") + "\n", encoding="utf-8")
    keys.chmod(0o600)
    config.write_text(config.read_text() + f'\n[encryption]\nenabled = true\nalgorithm = "{algorithm}"\n'
                                           'keys = { file = "secrets/field-keys" }\n', encoding="utf-8")
    return config


def _stored_bodies(root: Path) -> list[str]:
    """The stored bodies of case records (supervision may add alerts beside them), straight from the file."""
    with sqlite3.connect(root / "gateway.db") as conn:
        return [r[0] for r in conn.execute("SELECT body FROM records WHERE kind = 'case' ORDER BY id")]


async def _push(gw: Gateway, items: list[dict]) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(gw.api.url + PUSH, json=items, headers=PUSH_AUTH) as r:
        return r.status, await r.json()


async def _delivered(root: Path, case_no: str) -> dict:
    for _ in range(100):
        # The file sink writes a hidden temporary file and renames it: read only what is complete.
        for path in (root / "out").glob("[!.]*"):
            text = path.read_text(encoding="utf-8")
            if case_no in text:
                return json.loads(text)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{case_no} was not delivered to out/")


@pytest.mark.parametrize("algorithm", [AES_256_GCM, SM4_GCM])
async def test_pushed_personal_fields_are_encrypted_in_the_store_and_clear_where_they_are_delivered(
        tmp_path, algorithm) -> None:
    gw = Gateway(load_config(_site(tmp_path, algorithm=algorithm)))
    await gw.start()
    try:
        status, _ = await _push(gw, [case_item("ENC-2026-0001")])
        assert status == 202
        (body,) = _stored_bodies(tmp_path)
        assert ID_NO not in body and PHONE not in body and '"$enc"' in body
        assert json.loads(body)["data"]["case_no"] == "ENC-2026-0001"  # keys and queries stay clear

        delivered = await _delivered(tmp_path, "ENC-2026-0001")
        assert delivered["applicantIdNo"] == ID_NO and delivered["contactPhone"] == PHONE

        status, again = await _push(gw, [case_item("ENC-2026-0001")])  # idempotency still recognises it
        assert status == 200 and again["duplicates"] == 1
        engineer = await token_for(gw, "eng.enc", "engineer")
        async with aiohttp.ClientSession() as http, \
                http.get(gw.api.url + "/api/v1/records?case_no=ENC-2026-0001", headers=engineer) as r:
            page = await r.json()
        # Opened, then masked for this reader: the mask of the clear value, not of a ciphertext.
        assert page["items"][0]["record"]["data"]["applicant_id_no"] == "110105********002X"
        auditor = await token_for(gw, "aud.enc", "auditor")
        async with aiohttp.ClientSession() as http, \
                http.get(gw.api.url + "/api/v1/records?case_no=ENC-2026-0001&unmask=1&reason=complaint 17",
                         headers=auditor) as r:
            page = await r.json()
        assert page["items"][0]["record"]["data"]["applicant_id_no"] == ID_NO  # opened, and shown unmasked
    finally:
        await gw.stop()


async def test_the_file_ingest_helper_process_seals_fields_too(tmp_path) -> None:
    _site(tmp_path)
    path = tmp_path / "county.xml"
    write_xml_file(path, list(generate_items(30, seed=7)))
    config_text = (tmp_path / "gateway.toml").read_text()
    (tmp_path / "gateway.toml").write_text(config_text + '\n[sources.county]\nadapter = "filedrop"\n'
                                           'mapping = "mappings/provincial_approvedatainfo.in.yaml"\npath = "drop"\n',
                                           encoding="utf-8")
    config = load_config(tmp_path / "gateway.toml")
    comp = build(config)
    store = SqliteStore(tmp_path / "gateway.db")
    await store.open()
    try:
        ingestor = Ingestor(store, comp.router, comp.inbound, cipher=comp.cipher)
        result = await ingest_file(ingestor, "county", path, ref_prefix=path.name, cursor="t", parallel=True)
        assert result.complete and result.outcomes.get("accepted", 0) >= 25
        rows = await store.list_records(kind="case")
        assert rows and all("$enc" in json.dumps(r["record"]["data"]["applicant_id_no"]) for r in rows)
        opened = comp.cipher.open_record(rows[0]["record"])
        clear = opened["data"]["applicant_id_no"]
        assert len(clear) == 18 and clear.encode() in path.read_bytes()
        assert clear.encode() not in (tmp_path / "gateway.db").read_bytes()
    finally:
        await store.close()


def _run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


async def _cli(*args: str) -> tuple[int, str]:
    """The command in a thread: it runs its own event loop, as it does from a shell."""
    return await asyncio.to_thread(_run_cli, *args)


async def test_key_rotation_new_key_encrypts_old_keys_decrypt_and_reencrypt_moves_everything(tmp_path) -> None:
    config_path = _site(tmp_path)
    config = str(config_path)
    gw = Gateway(load_config(config_path))
    await gw.start()
    try:
        assert (await _push(gw, [case_item("ROT-1"), case_item("ROT-2")]))[0] == 202
    finally:
        await gw.stop()

    code, out = await _cli("encryption", "keygen", "-c", config, "--id", "k2026b")
    assert code == 0 and "k2026b" in out
    assert (tmp_path / "secrets" / "field-keys").stat().st_mode & 0o077 == 0

    gw = Gateway(load_config(config_path))  # restarted: the new key encrypts, the old one still decrypts
    await gw.start()
    try:
        assert (await _push(gw, [case_item("ROT-3")]))[0] == 202
        for case_no in ("ROT-1", "ROT-3"):
            delivered = await _delivered(tmp_path, case_no)
            assert delivered["applicantIdNo"] == ID_NO
    finally:
        await gw.stop()
    code, out = await _cli("encryption", "status", "-c", config, "--json")
    assert json.loads(out)["fields"] == {"k2026a": 4, "k2026b": 2}  # ID number and phone per case

    code, out = await _cli("encryption", "reencrypt", "-c", config, "--dry-run")
    assert code == 0 and "would re-encrypt 2 records" in out
    code, out = await _cli("encryption", "reencrypt", "-c", config)
    assert code == 0 and "re-encrypted 2 records under key 'k2026b'" in out and "4 from key k2026a" in out
    assert json.loads((await _cli("encryption", "status", "-c", config, "--json"))[1])["fields"] == {"k2026b": 6}

    # The old key can go now; everything still opens, and the audit trail records the rewrite and still verifies.
    keys = tmp_path / "secrets" / "field-keys"
    keys.write_text(keys.read_text().splitlines()[1] + "\n", encoding="utf-8")
    cipher = build(load_config(config_path)).cipher
    cases = [json.loads(b) for b in _stored_bodies(tmp_path)]
    assert [cipher.open_record(c)["data"]["applicant_id_no"] for c in cases] == [ID_NO] * 3
    code, out = await _cli("audit", "verify", "-c", config)
    assert code == 0 and "RESULT: OK" in out, out
    with sqlite3.connect(tmp_path / "gateway.db") as conn:
        (detail,) = [json.loads(r[0])["detail"] for r in conn.execute(
            "SELECT body FROM audit WHERE json_extract(CAST(body AS TEXT), '$.action') = 'fields_reencrypted'")]
    assert detail["records"] == 2 and detail["to_key"] == "k2026b" and detail["from"] == {"k2026a": 4}


async def test_a_record_whose_key_is_gone_is_retried_not_sent_sealed(tmp_path) -> None:
    config_path = _site(tmp_path)
    gw = Gateway(load_config(config_path))
    gw.run_delivery = False  # ingest only: deliver after the key is lost
    await gw.start()
    try:
        assert (await _push(gw, [case_item("LOST-1")]))[0] == 202
    finally:
        await gw.stop()
    (tmp_path / "secrets" / "field-keys").write_text(new_key_line(AES_256_GCM, "other") + "\n", encoding="utf-8")
    gw = Gateway(load_config(config_path))
    await gw.start()
    try:
        for _ in range(100):
            rows = await gw.store.list_deliveries(case_no="LOST-1")
            if rows and rows[0]["last_error"]:
                break
            await asyncio.sleep(0.05)
        assert rows[0]["state"] == "pending" and "key 'k2026a', which is not in the keyring" in rows[0]["last_error"]
        assert not list((tmp_path / "out").glob("*"))
    finally:
        await gw.stop()


async def test_a_gateway_without_the_keyring_never_sends_sealed_fields_on(tmp_path) -> None:
    config_path = _site(tmp_path)
    gw = Gateway(load_config(config_path))
    gw.run_delivery = False
    await gw.start()
    try:
        assert (await _push(gw, [case_item("NOKEY-1")]))[0] == 202
    finally:
        await gw.stop()
    config_path.write_text(config_path.read_text().split("\n[encryption]")[0], encoding="utf-8")
    gw = Gateway(load_config(config_path))
    await gw.start()
    try:
        for _ in range(100):
            rows = await gw.store.list_deliveries(case_no="NOKEY-1")
            if rows and rows[0]["last_error"]:
                break
            await asyncio.sleep(0.05)
        assert rows[0]["state"] == "pending" and "this gateway has no [encryption] keyring configured" in rows[0]["last_error"]
        assert not list((tmp_path / "out").glob("*"))
    finally:
        await gw.stop()


async def test_turning_encryption_off_and_decrypt_stores_fields_in_clear_again(tmp_path) -> None:
    config_path = _site(tmp_path)
    gw = Gateway(load_config(config_path))
    await gw.start()
    try:
        assert (await _push(gw, [case_item("OFF-1")]))[0] == 202
    finally:
        await gw.stop()
    config_path.write_text(config_path.read_text().replace("enabled = true\nalgorithm",
                                                           "enabled = false\nalgorithm"), encoding="utf-8")
    code, out = await _cli("encryption", "decrypt", "-c", str(config_path))
    assert code == 0 and "1 records now hold" in out
    (body,) = _stored_bodies(tmp_path)
    assert json.loads(body)["data"]["applicant_id_no"] == ID_NO


def test_a_missing_keyring_is_a_configuration_error(tmp_path) -> None:
    config_path = _site(tmp_path)
    (tmp_path / "secrets" / "field-keys").unlink()
    with pytest.raises(ConfigError, match="encryption: cannot read the keyring .*gateway encryption keygen"):
        build(load_config(config_path))

"""Security benchmark: what counterpart authentication and encryption at rest cost.

Three parts, each comparing variants within one run (the machine is shared and noisy):

1. the checks alone, per call on one core: a token, an HMAC signature over a 2 KB body,
   a WS-Security envelope (UsernameToken digest + RSA-SHA256 signature over Body and
   Timestamp), and sealing / opening the personal fields of one case record;
2. ``Ingestor.prepare`` (mapping, validation, business key, body) of provincial case
   records without encryption, with AES-256-GCM and with SM4-GCM;
3. a real gateway on loopback HTTPS: single-record pushes, 16 in flight, for a system
   that is anonymous (the development setting), one with a bearer token, one with HMAC
   and one with a client certificate (new TLS connections are not counted: the clients
   keep theirs alive).

    .venv/bin/python benchmarks/bench_security.py [--pushes 3000] [--records 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def per_call(fn: Callable[[], Any], n: int, rounds: int = 5) -> float:
    """Median microseconds per call over ``rounds`` rounds of ``n`` calls."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


def checks(root: Path) -> dict[str, float]:
    from lxml import etree
    from trust_support import HMAC_KEYS, TOKEN_NEW, WSSE_PASSWORD, make_pki, sha
    from zeep.wsse.username import UsernameToken

    from gateway.security.counterparts import CounterpartAuth, CounterpartGuard, Presented
    from gateway.security.fieldcrypt import (
        AES_256_GCM,
        SM4_GCM,
        FieldCipher,
        Place,
        new_key_line,
        parse_keyring,
    )
    from gateway.security.request_signing import canonical_string, hmac_signature
    from gateway.security.secrets import SecretRef  # noqa: F401  (the models reference it)
    from gateway.security.wsse import WsseVerifier
    from gateway_adapters.soap._wsse import WsseSecurity, X509Signer

    pki = make_pki(root)
    os.environ["BENCH_HMAC"] = HMAC_KEYS["prov-2026b"]
    guard = CounterpartGuard({
        "tok": CounterpartAuth.model_validate({"tokens": [{"sha256": sha(TOKEN_NEW)}]}),
        "mac": CounterpartAuth.model_validate({"hmac": {"keys": [{"id": "k", "secret": {"env": "BENCH_HMAC"}}]}}),
    })
    out: dict[str, float] = {}
    out["token check"] = per_call(lambda: guard.start("tok", Presented("POST", "/x", bearer=TOKEN_NEW)).result(),
                                  20_000)
    body = json.dumps([{"caseNo": f"B-{i}", "applicantName": "张三"} for i in range(40)]).encode()[:2048]
    counter = iter(range(10**9))

    def hmac_once() -> None:
        ts, nonce = str(int(time.time())), f"{next(counter):032d}"
        sig = hmac_signature(HMAC_KEYS["prov-2026b"].encode(), canonical_string("POST", "/x", ts, nonce, body))
        check = guard.start("mac", Presented("POST", "/x", headers={"X-Timestamp": ts, "X-Nonce": nonce,
                                                                     "X-Signature": sig, "X-Key-Id": "k"}))
        check.after_body(body)
        check.result()

    out["HMAC sign + check (2 KB body)"] = per_call(hmac_once, 5_000)

    os.environ["BENCH_WSSE"] = WSSE_PASSWORD
    verifier = WsseVerifier("ministry", CounterpartAuth.model_validate({"wsse": {
        "username_token": {"username": "ministry-gw", "password": {"env": "BENCH_WSSE"}},
        "certificates": [str(pki.signing.cert)]}}).wsse)
    signer = X509Signer(pki.signing.key.read_bytes(), pki.signing.cert.read_bytes(), None)
    soap = "http://schemas.xmlsoap.org/soap/envelope/"
    envelopes = []
    for i in range(300):
        env = etree.fromstring(f'<e:Envelope xmlns:e="{soap}"><e:Header/><e:Body><r><caseNo>W-{i}</caseNo></r>'
                               "</e:Body></e:Envelope>".encode())
        WsseSecurity(username_token=UsernameToken("ministry-gw", WSSE_PASSWORD, use_digest=True), signer=signer,
                     timestamp_ttl_seconds=300).apply(env, {})
        envelopes.append(etree.fromstring(etree.tostring(env)))
    it = iter(envelopes)
    out["WS-Security check (UsernameToken + RSA-2048 signature)"] = per_call(
        lambda: verifier.verify(next(it), time.time()), 50, rounds=5)

    from gateway.demo.generate import case_fields  # noqa: F401
    record_data = {"case_no": "C-1", "applicant_id_no": "11010519491231002X", "contact_id_no": "11010519491231002X",
                   "contact_phone": "13812345678", "contact_address": "山东省烟台市芝罘区某某路 1 号",
                   "applicant_name": "张三", "item_code": "3706000001"}
    place = Place("county", "case", "C-1", 1)
    for alg in (AES_256_GCM, SM4_GCM):
        cipher = FieldCipher(parse_keyring(new_key_line(alg, "k"), where="bench"), alg)
        sealed = cipher.seal_data(place, record_data)
        rec = {"kind": "case", "data": sealed, "provenance": {"source_system": "county", "source_id": "C-1",
                                                              "source_version": 1}}
        out[f"seal 4 personal fields ({alg})"] = per_call(lambda c=cipher: c.seal_data(place, record_data), 20_000)
        out[f"open 4 personal fields ({alg})"] = per_call(lambda c=cipher, r=rec: c.open_record(r), 20_000)
    return out


def prepare(n: int) -> dict[str, float]:
    import random

    from gateway.adapters import RawRecord
    from gateway.demo.generate import case_fields
    from gateway.mapping import load_mapping
    from gateway.pipeline.ingest import Ingestor
    from gateway.pipeline.router import Router
    from gateway.security.fieldcrypt import AES_256_GCM, SM4_GCM, FieldCipher, new_key_line, parse_keyring

    mapping = load_mapping(REPO / "mappings" / "provincial_approvedatainfo.in.yaml")
    rng = random.Random(1)
    raws = [RawRecord("county", {"SPSHENQIN": {k: str(v) for k, v in case_fields(i, rng).items()}}, f"r{i}")
            for i in range(n)]
    variants = {"no encryption": None}
    for alg in (AES_256_GCM, SM4_GCM):
        variants[alg] = FieldCipher(parse_keyring(new_key_line(alg, "k"), where="bench"), alg)
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):  # interleaved rounds, so noise hits every variant alike
        for name, cipher in variants.items():
            ingestor = Ingestor(None, Router([]), {"county": mapping}, cipher=cipher)  # type: ignore[arg-type]
            t = time.perf_counter()
            accepted, quarantined = ingestor.prepare("county", raws)
            rates[name].append(n / (time.perf_counter() - t))
            assert len(accepted) == n and not quarantined, quarantined[:1]
    return {k: statistics.median(v) for k, v in rates.items()}


async def _push_many(http: Any, url: str, path: str, headers: dict[str, str] | None, prefix: str, count: int,
                     concurrency: int) -> float:
    """Push ``count`` single-record requests, ``concurrency`` in flight; requests/s."""
    from trust_support import HMAC_KEYS, case_item

    from gateway.security.request_signing import canonical_string, hmac_signature

    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            body = json.dumps([case_item(f"{prefix}-{i}")]).encode()
            if headers is None:  # HMAC: a fresh signature and nonce per request, as a real client makes them
                ts, nonce = str(int(time.time())), uuid.uuid4().hex
                h = {"X-Timestamp": ts, "X-Nonce": nonce, "X-Key-Id": "prov-2026b",
                     "X-Signature": hmac_signature(HMAC_KEYS["prov-2026b"].encode(),
                                                   canonical_string("POST", path, ts, nonce, body))}
            else:
                h = dict(headers)
            h["Content-Type"] = "application/json"
            async with http.post(url + path, data=body, headers=h) as r:
                assert r.status == 202, await r.text()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - t)


async def pushes(root: Path, total: int) -> dict[str, float]:
    import aiohttp
    from trust_support import HMAC_KEYS, TOKEN_NEW, client_context, make_pki, write_site

    from gateway.app import Gateway
    from gateway.config import load_config

    pki = make_pki(root / "pki")
    os.environ.update({"TRUST_TEST_CITY_HMAC": "city", "TRUST_TEST_PROV_2026B": HMAC_KEYS["prov-2026b"],
                       "TRUST_TEST_WSSE_PASSWORD": "wsse"})
    site = root / "site"
    site.mkdir()
    config = write_site(site, pki)
    unconfigured = '[sources.unconfigured]\nadapter = "push"\nmapping = "mappings/hall_platform.in.yaml"\n'
    config.write_text(config.read_text().replace(unconfigured, unconfigured + "auth = { anonymous = true }\n"))
    gw = Gateway(load_config(config))
    await gw.start()
    variants = {
        "anonymous (development)": ("unconfigured", None, {}),
        "bearer token": ("city_platform", None, {"Authorization": f"Bearer {TOKEN_NEW}"}),
        "HMAC signature": ("province", None, None),
        "client certificate": ("county_hall", pki.county, {}),
    }
    results: dict[str, list[float]] = {}
    try:
        for round_ in range(2):
            for name, (system, cert, headers) in variants.items():
                path = f"/api/v1/inbound/{system}/case"
                connector = aiohttp.TCPConnector(ssl=client_context(pki, cert), limit=16)
                async with aiohttp.ClientSession(connector=connector) as http:
                    prefix = f"{system}-{round_}"
                    await _push_many(http, gw.api.url, path, headers, prefix + "-warm", 64, 16)  # open connections
                    rate = await _push_many(http, gw.api.url, path, headers, prefix, total, 16)
                results.setdefault(name, []).append(rate)
    finally:
        await gw.stop()
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=3000)
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("\n1. the checks alone (µs per call, median of 5 rounds)")
        for name, us in checks(root / "checks").items():
            print(f"   {name:<58} {us:10.1f} µs")
        print(f"\n2. Ingestor.prepare of {args.records:,} provincial case records (records/s, median of 3)")
        rates = prepare(args.records)
        base = rates["no encryption"]
        for name, rate in rates.items():
            print(f"   {name:<20} {rate:12,.0f}   ratio {rate / base:.2f}")
        print(f"\n3. single-record pushes over loopback HTTPS, 16 in flight, {args.pushes:,} per variant "
              "(requests/s, median of 2)")
        rates = asyncio.run(pushes(root / "push", args.pushes))
        base = rates["anonymous (development)"]
        for name, rate in rates.items():
            print(f"   {name:<26} {rate:10,.0f}   ratio {rate / base:.2f}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

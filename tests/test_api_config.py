"""The API as gateway.toml configures it: HTTPS with mutual TLS, and pushes of items that carry several kinds."""

from __future__ import annotations

import random
import shutil
import ssl
from pathlib import Path

import aiohttp
import pytest
from test_api_query import _certificates
from test_api_support import MAPPINGS

from gateway.app import Gateway
from gateway.config import ConfigError, config_from_dict, load_config
from gateway.demo.generate import HALL_CREDIT_CODE, approvedatainfo_xml, case_fields

CONFIG = """\
[gateway]
store = "sqlite:///gateway.db"

[api]
port = 0
{tls}

[sources.provincial]
adapter = "push"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
auth = {{ anonymous = true }}
"""


def _site(root: Path, tls: str = "") -> Path:
    shutil.copytree(MAPPINGS, root / "mappings")
    config = root / "gateway.toml"
    config.write_text(CONFIG.format(tls=tls), encoding="utf-8")
    return config


async def test_items_with_several_kinds_are_pushed_to_the_endpoint_without_a_kind(tmp_path) -> None:
    fields = case_fields(42, random.Random(1))
    acceptance = ("<SPSHOULI><SBLSH>{}</SBLSH><SLBMMC>烟台市行政审批服务局</SLBMMC><SLBMZZJGDM>{}</SLBMZZJGDM>"
                  "<SLZTDM>1</SLZTDM><SLSJ>20261120100000</SLSJ></SPSHOULI>").format(fields["SBLSH"], HALL_CREDIT_CODE)
    item = approvedatainfo_xml(fields).replace(b"</APPROVEDATAINFO>", acceptance.encode() + b"</APPROVEDATAINFO>")
    body = b"<APPROVEDATAINFOS>" + item + b"</APPROVEDATAINFOS>"
    gw = Gateway(load_config(_site(tmp_path)))
    await gw.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{gw.api.url}/api/v1/inbound/provincial"
            async with http.post(url, data=body, headers={"Content-Type": "application/xml"}) as r:
                answer = await r.json()
                assert r.status == 202, answer
            # the same item to the case endpoint is refused: it also carries an acceptance
            async with http.post(url + "/case", data=body, headers={"Content-Type": "application/xml"}) as r:
                assert r.status == 400
        assert gw.store is not None
        kinds = sorted(r["kind"] for r in await gw.store.list_records(case_no=fields["SBLSH"])
                       if r["kind"] != "supervision_alert")  # supervision may already have spoken about it
        assert kinds == ["acceptance", "case"]
    finally:
        await gw.stop()


async def test_the_api_speaks_mutual_tls_when_gateway_toml_names_certificates_and_a_client_ca(tmp_path) -> None:
    ca, (server_cert, server_key), (client_cert, client_key) = _certificates(tmp_path)
    tls = f'tls_cert = "{server_cert}"\ntls_key = "{server_key}"\nclient_ca = "{ca}"'
    gw = Gateway(load_config(_site(tmp_path / "site", tls)))
    await gw.start()
    try:
        assert gw.api.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(ca))
        with_cert = ssl.create_default_context(cafile=str(ca))
        with_cert.load_cert_chain(client_cert, client_key)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=with_cert)) as http:
            async with http.get(gw.api.url + "/healthz") as r:
                assert r.status == 200
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http:
            with pytest.raises(aiohttp.ClientError):  # no client certificate: the handshake is refused
                async with http.get(gw.api.url + "/healthz") as r:
                    await r.read()
    finally:
        await gw.stop()


def test_a_client_ca_without_a_server_certificate_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="mutual TLS is TLS first"):
        config_from_dict({"api": {"client_ca": "ca.pem"}}, base_dir=tmp_path)

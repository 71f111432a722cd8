"""SOAP adapter configuration and templates: what is refused when the gateway loads its
configuration, local-only WSDLs, and the data-not-code templates and XML bodies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx
from lxml import etree
from pydantic import ValidationError

from gateway.adapters import Delivery, discover, validate_config
from gateway_adapters.soap import (
    ADAPTER,
    PROVINCIAL_EXCHANGE_WSDL,
    SoapSetupError,
    SoapSink,
    SoapSinkConfig,
    SoapSourceConfig,
)
from gateway_adapters.soap._template import dict_to_xml, render, xml_to_dict

PUSH = {"operation": "service", "body_at": "Body", "body_as": "xml"}


def test_the_adapter_is_found_through_its_entry_point():
    found = discover(["soap"])
    assert found["soap"] is ADAPTER
    assert ADAPTER.source_config is SoapSourceConfig and ADAPTER.sink_config is SoapSinkConfig
    assert ADAPTER.make_sink is not None and ADAPTER.make_source is not None


def test_a_builtin_wsdl_is_named_by_file():
    config = SoapSinkConfig.model_validate({"wsdl": "builtin:provincial-exchange.wsdl", "push": PUSH})
    assert config.wsdl_file() == PROVINCIAL_EXCHANGE_WSDL and config.wsdl_file().is_file()


def test_a_wsdl_url_is_refused():
    with pytest.raises(ValidationError, match="is a URL; the SOAP adapter loads WSDLs only from local files"):
        SoapSinkConfig.model_validate({"wsdl": "http://province.example/exchange?wsdl", "push": PUSH})


def test_relative_paths_resolve_against_the_configuration_folder(tmp_path: Path):
    (tmp_path / "wsdl").mkdir()
    (tmp_path / "wsdl" / "x.wsdl").write_bytes(PROVINCIAL_EXCHANGE_WSDL.read_bytes())
    (tmp_path / "peer.pem").write_text("certificate")
    config = validate_config(
        SoapSinkConfig,
        {"wsdl": "wsdl/x.wsdl", "wsse": {"verify_response_cert": "peer.pem"}, "push": PUSH},
        tmp_path,
    )
    assert config.wsdl_file() == tmp_path / "wsdl" / "x.wsdl"
    assert config.wsse.verify_response_cert == tmp_path / "peer.pem"


def test_missing_files_are_named_with_their_field(tmp_path: Path):
    with pytest.raises(ValidationError, match="tls.ca_file: file .*ca.pem does not exist"):
        SoapSinkConfig.model_validate(
            {"wsdl": "builtin:provincial-exchange.wsdl", "tls": {"ca_file": str(tmp_path / "ca.pem")}, "push": PUSH}
        )


def test_an_unknown_placeholder_is_refused_with_the_allowed_ones():
    with pytest.raises(ValidationError, match=r"request.Header.sn: unknown placeholder \{serial\} \(allowed: attempt"):
        SoapSinkConfig.model_validate(
            {"wsdl": "builtin:provincial-exchange.wsdl", "push": {**PUSH, "request": {"Header": {"sn": "{serial}"}}}}
        )
    with pytest.raises(ValidationError, match=r"query.Q.P: unknown placeholder \{idempotency_key\}"):
        SoapSourceConfig.model_validate(
            {
                "wsdl": "builtin:provincial-exchange.wsdl",
                "pull": {"operation": "service", "items_path": "a", "query": {"Q": {"P": "{idempotency_key}"}}},
            }
        )


def test_unknown_keys_and_half_secret_references_are_refused():
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        SoapSinkConfig.model_validate({"wsdl": "builtin:provincial-exchange.wsdl", "push": PUSH, "timeout": 3})
    with pytest.raises(ValidationError, match="exactly one of 'env'"):
        SoapSinkConfig.model_validate(
            {
                "wsdl": "builtin:provincial-exchange.wsdl",
                "wsse": {"username_token": {"username": "u", "password": {}}},
                "push": PUSH,
            }
        )


def test_declared_and_undeclared_soap_headers_cannot_be_mixed():
    with pytest.raises(ValidationError, match="either plain names"):
        SoapSinkConfig.model_validate(
            {
                "wsdl": "builtin:provincial-exchange.wsdl",
                "push": {**PUSH, "soap_headers": {"serviceId": "a", "{urn:x}token": "b"}},
            }
        )


def test_an_integer_watermark_needs_an_integer_start():
    with pytest.raises(ValidationError, match="initial_cursor 'yesterday' is not an integer"):
        SoapSourceConfig.model_validate(
            {
                "wsdl": "builtin:provincial-exchange.wsdl",
                "pull": {"operation": "service", "items_path": "a", "watermark_field": "seq",
                         "watermark_type": "integer", "initial_cursor": "yesterday"},
            }
        )


async def test_a_wsdl_importing_a_remote_schema_is_refused_without_fetching_it(tmp_path: Path):
    text = PROVINCIAL_EXCHANGE_WSDL.read_text(encoding="utf-8").replace(
        '<xs:schema targetNamespace="urn:gov-exchange:provincial:v1" elementFormDefault="qualified">',
        '<xs:schema targetNamespace="urn:gov-exchange:provincial:v1" elementFormDefault="qualified">'
        '<xs:import namespace="urn:remote" schemaLocation="http://schemas.example.invalid/remote.xsd"/>',
    )
    wsdl = tmp_path / "remote-import.wsdl"
    wsdl.write_text(text, encoding="utf-8")
    sink = SoapSink("province", SoapSinkConfig.model_validate({"wsdl": str(wsdl), "push": PUSH}))
    with respx.mock:  # any HTTP attempt would fail the test as "not mocked"
        with pytest.raises(SoapSetupError, match=r"refers to http://schemas.example.invalid/remote.xsd, which is not a local file"):
            await sink.start()


async def test_a_wsdl_may_import_schemas_from_local_files(tmp_path: Path):
    schema = (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:local:types" '
        'elementFormDefault="qualified"><xs:element name="Receipt" type="xs:string"/></xs:schema>'
    )
    (tmp_path / "types.xsd").write_text(schema, encoding="utf-8")
    text = PROVINCIAL_EXCHANGE_WSDL.read_text(encoding="utf-8").replace(
        '<xs:schema targetNamespace="urn:gov-exchange:provincial:v1" elementFormDefault="qualified">',
        '<xs:schema targetNamespace="urn:gov-exchange:provincial:v1" elementFormDefault="qualified">'
        '<xs:import namespace="urn:local:types" schemaLocation="types.xsd"/>',
    )
    (tmp_path / "local.wsdl").write_text(text, encoding="utf-8")
    sink = SoapSink("province", SoapSinkConfig.model_validate({"wsdl": str(tmp_path / "local.wsdl"), "push": PUSH}))
    await sink.start()
    try:
        assert sink.endpoint.address == "http://localhost/exchange"
    finally:
        await sink.close()


@respx.mock
async def test_undeclared_soap_headers_are_sent_as_elements():
    route = respx.post("http://exchange.test/x").respond(
        200,
        text='<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        '<t:ExchangeMessageResponse xmlns:t="urn:gov-exchange:provincial:v1"><t:Header><t:sender>P</t:sender>'
        "<t:receiver>H</t:receiver><t:sn>1</t:sn></t:Header><t:Body>&lt;R/&gt;</t:Body>"
        "</t:ExchangeMessageResponse></s:Body></s:Envelope>",
        headers={"Content-Type": "text/xml"},
    )
    config = SoapSinkConfig.model_validate(
        {
            "wsdl": "builtin:provincial-exchange.wsdl",
            "endpoint": "http://exchange.test/x",
            "http_headers": {"X-Exchange-Node": "440300"},
            "push": {
                **PUSH,
                "soap_headers": {"{urn:province:auth}appId": "HALL-440300", "{urn:province:auth}seq": "{delivery_id}"},
                "request": {"Header": {"sender": "H", "receiver": "P", "sn": "{idempotency_key}"}},
            },
        }
    )
    sink = SoapSink("province", config)
    await sink.start()
    try:
        await sink.deliver_one(
            Delivery(5, "province", "key-5", "case", "rk", "C5", {"CASE": {"NO": "C5"}}, 1)
        )
    finally:
        await sink.close()
    request: httpx.Request = route.calls.last.request
    header = etree.fromstring(request.content).find("{http://schemas.xmlsoap.org/soap/envelope/}Header")
    assert header.findtext("{urn:province:auth}appId") == "HALL-440300"
    assert header.findtext("{urn:province:auth}seq") == "5"
    assert request.headers["X-Exchange-Node"] == "440300"


def test_placeholders_substitute_values_not_code():
    values = {"page": 3, "cursor": None, "token": "a{b}", "page_size": 50}
    assert render({"p": "{page}", "s": "{cursor}", "t": "{token}"}, values) == {"p": 3, "s": None, "t": "a{b}"}
    assert render("page {page} of {{all}}, {cursor}", values) == "page 3 of {all}, "
    assert render(["{page_size}", {"n": "x{page}"}], values) == [50, {"n": "x3"}]


def test_xml_bodies_round_trip_with_repeats_and_attributes():
    body = {"APPROVEDATAINFO": {"@version": "2", "SBLSH": "A-1", "CL": [{"MC": "营业执照"}, {"MC": "身份证"}],
                                "KONG": None}}
    text = dict_to_xml(body, None, "test")
    assert text == (
        '<APPROVEDATAINFO version="2"><SBLSH>A-1</SBLSH><CL><MC>营业执照</MC></CL><CL><MC>身份证</MC></CL>'
        "<KONG/></APPROVEDATAINFO>"
    )
    assert xml_to_dict(text, "test") == {
        "APPROVEDATAINFO": {"@version": "2", "SBLSH": "A-1", "CL": [{"MC": "营业执照"}, {"MC": "身份证"}], "KONG": None}
    }
    assert dict_to_xml({"A": "1", "B": "2"}, "ROOT", "test") == "<ROOT><A>1</A><B>2</B></ROOT>"


def test_a_body_without_one_root_or_with_a_bad_name_is_refused():
    with pytest.raises(ValueError, match="exactly one root element"):
        dict_to_xml({"A": "1", "B": "2"}, None, "delivery 3")
    with pytest.raises(ValueError, match="delivery 3: '1ABC' is not a valid XML element name"):
        dict_to_xml({"ROOT": {"1ABC": "x"}}, None, "delivery 3")


README = Path(__file__).resolve().parent.parent / "adapters" / "soap" / "README.md"


def _readme_sections() -> list[tuple[str, str, dict]]:
    import re
    import tomllib

    blocks = [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)]
    return [
        (section, name, options)
        for block in blocks
        for section in ("sinks", "sources")
        for name, options in block.get(section, {}).items()
        if options.get("adapter") == "soap"
    ]


def test_the_readmes_configuration_examples_are_valid(tmp_path: Path):
    checked = []
    for section, name, options in _readme_sections():
        adapter_options = {k: v for k, v in options.items() if k not in ("adapter", "mapping")}
        if not adapter_options["wsdl"].startswith("builtin:"):
            (tmp_path / adapter_options["wsdl"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / adapter_options["wsdl"]).write_bytes(PROVINCIAL_EXCHANGE_WSDL.read_bytes())
        model = SoapSinkConfig if section == "sinks" else SoapSourceConfig
        validate_config(model, adapter_options, tmp_path)
        checked.append(name)
    assert checked == ["county-market", "market-supervision", "province-exchange", "province-records"]

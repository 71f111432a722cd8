"""Building an operation's arguments from a call's templates and body, and finding the part of
a response the result paths refer to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._config import CallSettings
from ._template import TemplateError, dict_to_xml, get_path, merge_disjoint, render, set_path, xml_to_dict


def build_request(
    settings: CallSettings, values: Mapping[str, Any], body: Any, what: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(operation arguments, SOAP header values) for one call.

    ``body`` (an outbound record, or a pull's rendered query) goes to ``body_at`` —
    or is merged into the arguments — as an object, or as an XML document string
    when ``body_as = "xml"`` (the exchange envelope's ``Body``).
    """
    arguments = render(settings.request, values)
    headers = render(settings.soap_headers, values)
    if body is None:
        return arguments, headers
    placed: Any = body
    if settings.body_as == "xml":
        if isinstance(body, bytes):
            placed = body.decode("utf-8")
        elif isinstance(body, Mapping):
            placed = dict_to_xml(body, settings.xml_root, what)
        elif not isinstance(body, str):
            raise TemplateError(f"{what}: body_as = 'xml' needs a structure or XML text, got {type(body).__name__}")
    if settings.body_at is None:
        if not isinstance(placed, Mapping):
            raise TemplateError(
                f"{what}: the body is {type(placed).__name__}, not a structure, so it cannot be merged into the "
                "operation's arguments; set body_at to the argument it belongs in"
            )
        arguments = merge_disjoint(arguments, placed, what)
    else:
        set_path(arguments, settings.body_at, placed)
    return arguments, headers


def response_root(settings: CallSettings, response: Any, what: str) -> Any:
    """The response itself, or the XML document carried in its ``response_xml_at`` string field, parsed."""
    if settings.response_xml_at is None:
        return response
    text = get_path(response, settings.response_xml_at)
    if not isinstance(text, str | bytes) or not text.strip():
        raise TemplateError(
            f"{what}: response field {settings.response_xml_at!r} (response_xml_at) holds no XML document "
            f"(found {type(text).__name__})"
        )
    return xml_to_dict(text, f"{what}: response field {settings.response_xml_at!r}")

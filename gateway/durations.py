"""One duration syntax for every setting ("30s", "5m", "2h", "7d"), and the deprecations `gateway check` reports.

Core and adapter models declare durations as :data:`Duration` and renamed keys with
:func:`renamed`; configuration written for an older release still loads, and
:func:`deprecated_settings` names every old key and every bare number of seconds so
that ``gateway check`` can say what to write instead.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Union

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)


def parse_duration(value: Any) -> float:
    """Seconds from "30s", "1.5m", "2h", "7d", "250ms" — or, deprecated, a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (write a number with ms, s, m, h or d, such as \"30s\")")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"not a duration: {value!r} (a duration is zero or more, such as \"30s\")")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (write a number with ms, s, m, h or d, such as \"30s\" or \"5m\")")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_timedelta(value: Any) -> Any:
    """A timedelta from the gateway's syntax ("3d", "36h"); ISO 8601 ("P3D") and timedeltas pass to pydantic."""
    if isinstance(value, timedelta) or (isinstance(value, str) and _ISO.match(value.strip())):
        return value
    return timedelta(seconds=parse_duration(value))


class _DurationMark:
    """Marks a field as a duration, so deprecated_settings can spot bare numbers in it."""

    def __repr__(self) -> str:
        return "Duration"


DURATION = _DurationMark()

Duration = Annotated[float, BeforeValidator(parse_duration), DURATION]
"""A duration setting, held as float seconds: "30s", "5m", "2h", "7d", "250ms"."""

TimedeltaSetting = Annotated[timedelta, BeforeValidator(parse_timedelta), DURATION]
"""A duration setting held as a timedelta; also takes ISO 8601 ("P3D") as older configurations wrote it."""


def renamed(default: Any, name: str, *old: str, **field: Any) -> Any:
    """A pydantic Field whose key in gateway.toml is ``name`` and that still accepts its ``old`` names."""
    return Field(default, validation_alias=AliasChoices(name, *old), **field)


# --------------------------------------------------------------------------- deprecations


def suggest(seconds: float) -> str:
    """The shortest exact duration string for ``seconds``: 60 → "1m", 0.05 → "50ms", 90 → "90s"."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds >= 1 or seconds == 0:
        return f"{seconds:g}s"
    ms = seconds * 1000
    return f"{ms:g}ms" if ms >= 1 else f"{seconds:g}s"


def _is_duration(annotation: Any, metadata: list[Any]) -> bool:
    if any(m is DURATION for m in metadata):
        return True
    if typing.get_origin(annotation) is Annotated:
        return any(m is DURATION for m in typing.get_args(annotation)[1:])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_is_duration(arg, []) for arg in typing.get_args(annotation))
    return False


def _walk(annotation: Any, value: Any, path: str) -> list[str]:
    """Deprecations inside ``value``, a value of a field typed ``annotation`` (models, lists, dicts, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return deprecated_settings(annotation, value, path)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    out: list[str] = []
    if origin in (list, tuple, set, frozenset) and isinstance(value, list) and args:
        for i, entry in enumerate(value):
            out.extend(_walk(args[0], entry, f"{path}[{i}]"))
    elif origin is dict and isinstance(value, Mapping) and len(args) == 2:
        for key, entry in value.items():
            out.extend(_walk(args[1], entry, f"{path}.{key}"))
    elif origin is Annotated and args:
        out.extend(_walk(args[0], value, path))
    elif origin in (Union, types.UnionType):
        for arg in args:
            out.extend(_walk(arg, value, path))
    return out


def _keys(model: type[BaseModel]) -> dict[str, tuple[str, str | None]]:
    """key in gateway.toml → (field name, the current key when this one is an old name)."""
    keys: dict[str, tuple[str, str | None]] = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            choices = [c for c in alias.choices if isinstance(c, str)]
            if choices:
                keys[choices[0]] = (name, None)
                for old in choices[1:]:
                    keys[old] = (name, choices[0])
                continue
        keys[alias if isinstance(alias, str) else name] = (name, None)
    return keys


def deprecated_settings(model: type[BaseModel], raw: Any, where: str = "") -> list[str]:
    """Every old key name and bare-number duration in ``raw`` (the TOML table ``model`` validates)."""
    if not isinstance(raw, Mapping):
        return []
    out: list[str] = []
    keys = _keys(model)
    for key, value in raw.items():
        hit = keys.get(key)
        if hit is None:
            continue
        name, current = hit
        path = f"{where}.{key}" if where else str(key)
        if current is not None:
            out.append(f"{path}: the name {key!r} is deprecated; call it {current!r}")
        info = model.model_fields[name]
        if _is_duration(info.annotation, info.metadata) and isinstance(value, int | float) \
                and not isinstance(value, bool):
            shown = suggest(float(value)) if math.isfinite(value) and value >= 0 else "30s"
            out.append(f"{path} = {value}: a bare number of seconds is deprecated; write \"{shown}\"")
        elif _is_duration(info.annotation, info.metadata) and isinstance(value, str) and _ISO.match(value.strip()):
            seconds = parse_timedelta_seconds(value)
            out.append(f"{path} = {value!r}: ISO 8601 durations are deprecated; write \"{suggest(seconds)}\"")
        out.extend(_walk(info.annotation, value, path))
    return list(dict.fromkeys(out))


def parse_timedelta_seconds(value: str) -> float:
    m = _ISO.match(value.strip())
    if not m:
        return 0.0
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def refuse_both_names(model: type[BaseModel], data: Any) -> Any:
    """A model's before-validator: a setting given under its new and its old name at once is an error."""
    if isinstance(data, Mapping):
        for info in model.model_fields.values():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                given = [c for c in alias.choices if isinstance(c, str) and c in data]
                if len(given) > 1:
                    raise ValueError(f"{given[0]!r} and its deprecated name {given[1]!r} are both set; "
                                     f"keep only {given[0]!r}")
    return data

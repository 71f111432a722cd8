"""What the ``gateway`` commands share about people: the store, the OS user, and masked output.

Commands run on the gateway host against the store. Whoever runs them is named in the
audit trail by the OS user (``os:alice``). Rows they print — records, deliveries,
quarantine, audit entries, ``--json`` too — are masked like the API's
(``gateway.security.masking``); ``--unmask --reason TEXT`` shows them in full only to an
auditor account, proved by its password (prompted) or by an auditor's API token in
``$GATEWAY_TOKEN``, and writes an ``unmasked`` audit entry first. Use
:func:`reader_options` and :func:`present_rows` in any command that prints stored data::

    @reader_options
    def my_list(config_path, ..., access: ReadAccess) -> None:
        rows = run(present_rows(config, rows, "quarantine", access, by_system=True))
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import sys
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from gateway.config import ConfigError, GatewayConfig
from gateway.security import credentials
from gateway.security.masking import mask_text, masker_for, payload_rules

T = TypeVar("T")
MIN_REASON = 5
TOKEN_ENV = "GATEWAY_TOKEN"
USER_ENV = "GATEWAY_USER"


def os_actor() -> str:
    """The OS user running the command, as the audit trail names it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid-{os.getuid()}"
    return f"os:{name}"


async def with_store(config: GatewayConfig, work: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.store import make_store

    store = make_store(config.gateway.store, base=config.base_dir, audit_algorithm=config.gateway.audit_hash)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def run_with_store(config: GatewayConfig, work: Callable[[Any], Awaitable[T]]) -> T:
    return asyncio.run(with_store(config, work))


def configured_systems(config: GatewayConfig) -> list[str]:
    return sorted({*config.sources, *config.sinks})


# --------------------------------------------------------------------------- reading stored data


@dataclass(slots=True)
class ReadAccess:
    """A command's ``--unmask`` / ``--reason`` / ``--user`` options."""

    unmask: bool = False
    reason: str | None = None
    user: str | None = None
    query: dict[str, Any] = field(default_factory=dict)


def reader_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--unmask``, ``--reason`` and ``--user`` and pass them as one ``access`` argument."""

    @functools.wraps(fn)  # keeps the options already declared on fn (click keeps them in fn.__dict__)
    def wrap(*args: Any, unmask: bool, reason: str | None, as_user: str | None, **kwargs: Any) -> Any:
        query = {k: v for k, v in kwargs.items() if k not in ("config_path", "as_json") and v not in (None, False)}
        return fn(*args, access=ReadAccess(unmask, reason, as_user, query), **kwargs)

    wrap = click.option("--user", "as_user", metavar="NAME", envvar=USER_ENV,
                        help=f"the auditor account unmasking (default ${USER_ENV}); its password is asked, or its "
                             f"API token is read from ${TOKEN_ENV}")(wrap)
    wrap = click.option("--reason", metavar="TEXT",
                        help="why personal data must be seen unmasked (required with --unmask; audited)")(wrap)
    wrap = click.option("--unmask", is_flag=True,
                        help="show personal data unmasked: auditors only, with --reason; written to the audit "
                             "trail")(wrap)
    return wrap


def _refuse(message: str) -> None:
    click.echo(f"refused: {message}", err=True)
    sys.exit(2)


def _check_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if any(unicodedata.category(c)[0] == "C" for c in text):
        _refuse("the reason contains control characters")
    if len(text) < MIN_REASON:
        _refuse(f"--unmask needs --reason TEXT (at least {MIN_REASON} characters): why must personal data be seen? "
                "It is written to the audit trail with your name")
    return text[:500]


async def _auditor(store: Any, access: ReadAccess) -> tuple[str, str]:
    """(account, how it was proved) of the auditor asking to unmask; exits when it is not one."""
    token_text = os.environ.get(TOKEN_ENV)
    if token_text:
        parsed = credentials.parse_token(token_text)
        found = await store.find_token(parsed.token_id) if parsed is not None else None
        if parsed is None or found is None or not credentials.token_matches(found[0].secret_hash, parsed):
            _refuse(f"${TOKEN_ENV} holds no valid API token")
        token, user = found
        if token.revoked_at is not None or token.expires_at <= time.time():
            _refuse(f"API token {token.token_id} in ${TOKEN_ENV} is revoked or expired")
        if access.user and access.user.lower() != user.name:
            _refuse(f"the API token in ${TOKEN_ENV} belongs to {user.name}, not {access.user}")
        how = f"token {token.token_id}"
    else:
        name = (access.user or "").strip().lower()
        if not name:
            _refuse(f"--unmask needs the auditor's account: --user NAME (or ${USER_ENV}), or an auditor's API token "
                    f"in ${TOKEN_ENV}")
        user = await store.get_user(name)
        password = click.prompt(f"password of {name}", hide_input=True, err=True)
        ok = await credentials.verify_password(user.password_hash if user is not None and user.active else None,
                                               password)
        if not ok:
            _refuse(f"user name or password is wrong for {name}")
        how = "password"
    if not user.active:
        _refuse(f"account {user.name} is disabled")
    if user.role != "auditor":
        _refuse(f"{user.name} has role {user.role}; only an auditor may see personal data unmasked")
    return user.name, how


def _row_masker(config: GatewayConfig) -> Callable[[str | None], Callable[[Any], Any]]:
    """Masking by system: the schema's rules plus the counterpart keys each source's mapping reads."""
    cache: dict[str | None, Callable[[Any], Any]] = {}

    def get(system: str | None) -> Callable[[Any], Any]:
        if system not in cache:
            mapping = None
            source = config.sources.get(system or "")
            if source is not None:
                from gateway.mapping import MappingError, load_mapping

                try:
                    mapping = load_mapping(config.resolve(source.mapping))
                except (MappingError, OSError):
                    mapping = None  # numbers in free text are still found; names need the mapping's keys
            cache[system] = masker_for(payload_rules(mapping) if mapping is not None else None)
        return cache[system]

    return get


async def present_rows(store: Any, config: GatewayConfig, rows: list[dict[str, Any]], what: str, access: ReadAccess,
                       *, by_system: bool = False) -> list[dict[str, Any]]:
    """``rows`` masked, or — for an auditor with a reason — unmasked after an ``unmasked`` audit entry."""
    if not access.unmask:
        if access.reason:
            click.echo("note: --reason is only used with --unmask; output is masked", err=True)
        maskers = _row_masker(config)
        return [maskers(r.get("system") if by_system else None)(r) for r in rows]
    reason = _check_reason(access.reason)
    user, how = await _auditor(store, access)
    if rows:
        cases = sorted({str(r["case_no"]) for r in rows if r.get("case_no")})
        await store.audit_event("unmasked", system=None, case=cases[0] if len(cases) == 1 else None, detail={
            "user": user, "role": "auditor", "via": "cli", "proved_by": how, "os_user": os_actor(),
            "reason": mask_text(reason), "what": what,
            "query": {k: mask_text(str(v)) for k, v in access.query.items()}, "rows": len(rows),
            "cases": cases[:50]})
    click.echo(f"unmasked for {user} (reason recorded in the audit trail)", err=True)
    return rows


def load_config_or_exit(path: Any) -> GatewayConfig:
    from gateway.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"configuration error in {exc}", err=True)
        sys.exit(2)

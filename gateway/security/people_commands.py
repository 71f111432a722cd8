"""The ``gateway users`` and ``gateway tokens`` commands: accounts, roles, passwords and API tokens.

Run on the gateway host against the store (``-c gateway.toml``); each change is an audit
entry naming the OS user who made it. The first engineer account is made the same way::

    gateway users add admin --role engineer              # asks for the password twice
    gateway users add admin --role engineer --generate-password   # prints one, once

Passwords never appear on a command line: they are asked for, read from standard input
(``--password-stdin``) or generated. Tokens are shown once, when created.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click

from gateway.config import parse_duration
from gateway.security import credentials
from gateway.security.cli import configured_systems, load_config_or_exit, os_actor, run_with_store
from gateway.security.identity import ROLES, parse_systems

_NAME = re.compile(r"^[a-z0-9][a-z0-9._@\-]{1,63}$")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_TOKEN_LIFETIME = 2 * 366 * 86400.0


def _config_option(fn: Any) -> Any:
    import os

    return click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        default=lambda: os.environ.get("GATEWAY_CONFIG", "gateway.toml"),
                        show_default="$GATEWAY_CONFIG or gateway.toml", help="The gateway.toml whose store to use.")(fn)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, _CHINA).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _user_name(value: str) -> str:
    name = value.strip().lower()
    if not _NAME.match(name):
        raise click.BadParameter("user names are 2-64 of a-z 0-9 . _ @ -, starting with a letter or digit")
    return name


def _systems_for(role: str, systems: tuple[str, ...], config: Any) -> list[str] | None:
    bound = sorted(parse_systems(systems))
    if role != "operator":
        if bound:
            _fail(f"--systems binds operators only; a {role} sees every system", 2)
        return None
    if not bound:
        _fail("an operator is bound to the systems it runs: give --systems a,b (configured systems: "
              f"{', '.join(configured_systems(config)) or 'none'})", 2)
    unknown = [s for s in bound if s not in configured_systems(config)]
    if unknown:
        _fail(f"unknown system(s) {', '.join(unknown)}: configured systems are "
              f"{', '.join(configured_systems(config)) or 'none'}", 2)
    return bound


def _new_password(user: str, generate: bool, from_stdin: bool) -> tuple[str, bool]:
    """(password, generated?) from stdin, a generator, or two prompts; the policy is checked."""
    if generate and from_stdin:
        _fail("choose --generate-password or --password-stdin, not both", 2)
    if generate:
        return credentials.generate_password(), True
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"new password for {user}", hide_input=True, confirmation_prompt=True, err=True)
    try:
        credentials.check_password_policy(password, user)
    except credentials.PasswordRejected as exc:
        _fail(str(exc), 2)
    return password, False


def _identity_error(exc: Exception) -> None:
    _fail(str(exc))


# --------------------------------------------------------------------------- users


@click.group("users")
def users() -> None:
    """Console and API accounts: engineer, operator (bound to systems), supervisor, auditor."""


@users.command("add")
@_config_option
@click.argument("name", callback=lambda _c, _p, v: _user_name(v))
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the account may do")
@click.option("--systems", multiple=True, metavar="A,B", help="operator: the systems it is bound to (repeatable)")
@click.option("--display-name", metavar="TEXT", help="a name for people (shown in the console, never audited)")
@click.option("--generate-password", is_flag=True, help="make a random password and print it once")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--no-login", is_flag=True, help="no console password: the account only owns API tokens")
def users_add(config_path: Path, name: str, role: str, systems: tuple[str, ...], display_name: str | None,
              generate_password: bool, password_stdin: bool, no_login: bool) -> None:
    """Create account NAME (the first engineer account is made this way too)."""
    from gateway.store.identity import IdentityError

    config = load_config_or_exit(config_path)
    bound = _systems_for(role, systems, config)
    password, generated = (None, False) if no_login else _new_password(name, generate_password, password_stdin)
    hashed = credentials.hash_password_sync(password) if password is not None else None
    try:
        user = run_with_store(config, lambda s: s.add_user(name, role, bound, display_name, hashed, os_actor()))
    except IdentityError as exc:
        _identity_error(exc)
    scope = f", bound to {', '.join(user.systems)}" if user.systems is not None else ""
    click.echo(f"user {user.name} added: role {user.role}{scope}")
    if generated:
        click.echo(f"password: {password}")
        click.echo("(shown once; give it to the user over a channel you trust)")


@users.command("list")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def users_list(config_path: Path, as_json: bool) -> None:
    """Every account with its role, systems, state and last login."""
    config = load_config_or_exit(config_path)

    async def work(store: Any) -> list[tuple[Any, int, int]]:
        out = []
        tokens = await store.list_tokens()
        now = time.time()
        for user in await store.list_users():
            active_tokens = sum(1 for t in tokens if t.user_name == user.name and t.state(now) == "active")
            out.append((user, await store.count_sessions(user.name), active_tokens))
        return out

    rows = run_with_store(config, work)
    if as_json:
        for user, sessions, tokens in rows:
            click.echo(json.dumps({"name": user.name, "display_name": user.display_name, "role": user.role,
                                   "systems": list(user.systems) if user.systems is not None else None,
                                   "console_login": user.password_hash is not None, "disabled": not user.active,
                                   "last_login_at": user.last_login_at, "sessions": sessions, "tokens": tokens,
                                   "created_by": user.created_by}, ensure_ascii=False))
        return
    if not rows:
        click.echo("(no users: create the first with `gateway users add NAME --role engineer`)")
        return
    click.echo(f"{'name':<20} {'role':<10} {'systems':<24} {'login':<5} {'state':<8} {'last login':<16} sessions tokens")
    for user, sessions, tokens in rows:
        systems = ",".join(user.systems) if user.systems is not None else "*"
        click.echo(f"{user.name:<20} {user.role:<10} {systems[:24]:<24} {'yes' if user.password_hash else 'no':<5} "
                   f"{'active' if user.active else 'disabled':<8} {_when(user.last_login_at):<16} {sessions:>8} "
                   f"{tokens:>6}")


@users.command("set-role")
@_config_option
@click.argument("name", callback=lambda _c, _p, v: _user_name(v))
@click.argument("role", type=click.Choice(ROLES))
@click.option("--systems", multiple=True, metavar="A,B", help="operator: the systems it is bound to (repeatable)")
def users_set_role(config_path: Path, name: str, role: str, systems: tuple[str, ...]) -> None:
    """Give NAME another role (and, for an operator, its systems); effective at its next request."""
    from gateway.store.identity import IdentityError

    config = load_config_or_exit(config_path)
    bound = _systems_for(role, systems, config)
    try:
        user = run_with_store(config, lambda s: s.set_user_role(name, role, bound, os_actor()))
    except IdentityError as exc:
        _identity_error(exc)
    scope = f", bound to {', '.join(user.systems)}" if user.systems is not None else ""
    click.echo(f"user {user.name}: role {user.role}{scope}")


@users.command("passwd")
@_config_option
@click.argument("name", callback=lambda _c, _p, v: _user_name(v))
@click.option("--generate-password", is_flag=True, help="make a random password and print it once")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def users_passwd(config_path: Path, name: str, generate_password: bool, password_stdin: bool) -> None:
    """Set NAME's console password; its open sessions end."""
    from gateway.store.identity import IdentityError

    config = load_config_or_exit(config_path)
    existing = run_with_store(config, lambda s: s.get_user(name))
    if existing is None:
        _fail(f"no user {name!r} (see `gateway users list`)")
    password, generated = _new_password(name, generate_password, password_stdin)
    hashed = credentials.hash_password_sync(password)
    try:
        ended = run_with_store(config, lambda s: s.set_user_password(name, hashed, os_actor()))
    except IdentityError as exc:
        _identity_error(exc)
    click.echo(f"password of {name} set; {ended} open session(s) ended")
    if generated:
        click.echo(f"password: {password}")
        click.echo("(shown once; give it to the user over a channel you trust)")


def _set_disabled(config_path: Path, name: str, disabled: bool) -> None:
    from gateway.store.identity import IdentityError

    config = load_config_or_exit(config_path)
    try:
        ended = run_with_store(config, lambda s: s.set_user_disabled(name, disabled, os_actor()))
    except IdentityError as exc:
        _identity_error(exc)
    if disabled:
        click.echo(f"user {name} disabled: {ended} session(s) ended, its API tokens no longer work")
    else:
        click.echo(f"user {name} enabled")


@users.command("disable")
@_config_option
@click.argument("name", callback=lambda _c, _p, v: _user_name(v))
def users_disable(config_path: Path, name: str) -> None:
    """Disable NAME: its sessions end and its tokens stop working (the account stays, for the audit trail)."""
    _set_disabled(config_path, name, True)


@users.command("enable")
@_config_option
@click.argument("name", callback=lambda _c, _p, v: _user_name(v))
def users_enable(config_path: Path, name: str) -> None:
    """Enable a disabled account again."""
    _set_disabled(config_path, name, False)


# --------------------------------------------------------------------------- tokens


@click.group("tokens")
def tokens() -> None:
    """API tokens for scripts (Authorization: Bearer …), each acting as its user."""


def _lifetime(_ctx: Any, _param: Any, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not 0 < seconds <= MAX_TOKEN_LIFETIME:
        raise click.BadParameter("a token lives between 1 second and 2 years (e.g. 30d, 365d)")
    return seconds


@tokens.command("create")
@_config_option
@click.option("--user", "user", required=True, callback=lambda _c, _p, v: _user_name(v),
              help="the account the token acts as")
@click.option("--label", default="", help="what the token is for (e.g. 'nightly report script')")
@click.option("--expires", "lifetime", default="90d", show_default=True, callback=_lifetime,
              help="lifetime (e.g. 30d, 12h; at most 2 years)")
def tokens_create(config_path: Path, user: str, label: str, lifetime: float) -> None:
    """Create an API token for USER; it is printed once and stored only as a hash."""
    from gateway.store.identity import IdentityError

    config = load_config_or_exit(config_path)
    token_id, token = credentials.new_token()
    parsed = credentials.parse_token(token)
    assert parsed is not None
    expires_at = time.time() + lifetime
    try:
        run_with_store(config, lambda s: s.create_token(token_id, credentials.token_secret_hash(token_id,
                                                                                            parsed.secret),
                                                        user, label[:200], expires_at, os_actor()))
    except IdentityError as exc:
        _identity_error(exc)
    click.echo(f"token {token_id} for {user}, expires {_when(expires_at)}:")
    click.echo(token)
    click.echo("(shown once; send it as 'Authorization: Bearer <token>'; revoke with "
               f"`gateway tokens revoke {token_id}`)")


@tokens.command("list")
@_config_option
@click.option("--user", "user", callback=lambda _c, _p, v: _user_name(v) if v else None, help="only this user's")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def tokens_list(config_path: Path, user: str | None, as_json: bool) -> None:
    """Tokens with their owner, state, expiry and last use (never the token itself)."""
    config = load_config_or_exit(config_path)
    rows = run_with_store(config, lambda s: s.list_tokens(user))
    now = time.time()
    if as_json:
        for t in rows:
            click.echo(json.dumps({"token_id": t.token_id, "user": t.user_name, "label": t.label, "state": t.state(now),
                                   "created_at": t.created_at, "created_by": t.created_by, "expires_at": t.expires_at,
                                   "revoked_at": t.revoked_at, "last_used_at": t.last_used_at,
                                   "last_used_from": t.last_used_from}, ensure_ascii=False))
        return
    if not rows:
        click.echo("(no tokens)")
        return
    click.echo(f"{'token':<12} {'user':<20} {'state':<8} {'expires':<16} {'last used':<16} {'from':<16} label")
    for t in rows:
        click.echo(f"{t.token_id:<12} {t.user_name:<20} {t.state(now):<8} {_when(t.expires_at):<16} "
                   f"{_when(t.last_used_at):<16} {(t.last_used_from or '-'):<16} {t.label}")


@tokens.command("revoke")
@_config_option
@click.argument("token_id")
def tokens_revoke(config_path: Path, token_id: str) -> None:
    """Revoke TOKEN_ID (from `gateway tokens list`): it stops working at once."""
    from gateway.store.identity import IdentityError

    config = load_config_or_exit(config_path)
    parsed = credentials.parse_token(token_id)
    token_id = parsed.token_id if parsed is not None else token_id.strip()  # the whole token works too
    try:
        token = run_with_store(config, lambda s: s.revoke_token(token_id, os_actor()))
    except IdentityError as exc:
        _identity_error(exc)
    click.echo(f"token {token.token_id} of {token.user_name} revoked")

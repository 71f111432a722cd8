"""`gateway users` and `gateway tokens`, run as a user would on the gateway host, against a real API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from click.testing import CliRunner
from test_api_support import login, write_gateway_dir
from test_personal_data import gateway_cmd

from gateway.app import Gateway
from gateway.cli import main
from gateway.config import load_config


def cli(*args: str, stdin: str | None = None):  # in-process where no process boundary matters
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def _users(config: Path) -> dict[str, dict]:
    result = cli("users", "list", "--json", "-c", str(config))
    assert result.exit_code == 0, result.output
    return {u["name"]: u for u in map(json.loads, result.output.splitlines())}


def test_the_first_engineer_is_bootstrapped_from_the_cli_and_logs_in_with_the_generated_password(tmp_path) -> None:
    config = write_gateway_dir(tmp_path)
    assert "no users" in cli("users", "list", "-c", str(config)).output
    # a real process, with the real Argon2 cost
    made = gateway_cmd("users", "add", "Admin", "--role", "engineer", "--generate-password", "-c", str(config))
    assert made.returncode == 0, made.stderr
    password = next(line for line in made.stdout.splitlines() if line.startswith("password: ")).split(": ", 1)[1]
    assert "user admin added: role engineer" in made.stdout and len(password) == 20
    admin = _users(config)["admin"]
    assert admin["role"] == "engineer" and admin["console_login"] is True

    async def log_in() -> list[dict]:
        gw = Gateway(load_config(config))
        await gw.start()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                answer = await login(browser, gw.api.url, "admin", password)
                assert answer["role"] == "engineer"
            return [e.decoded() for e in await gw.store.audit_entries(limit=1000)]
        finally:
            await gw.stop()

    entries = asyncio.run(log_in())
    (added,) = [e["detail"] for e in entries if e["action"] == "user_changed"]
    assert added["change"] == "added" and added["by"].startswith("os:") and password not in json.dumps(entries)


def test_roles_systems_passwords_and_disabling_are_checked_and_audited(tmp_path) -> None:
    config = write_gateway_dir(tmp_path)
    weak = cli("users", "add", "wang.wu", "--role", "operator", "--systems", "hall_platform",
                       "--password-stdin", "-c", str(config), stdin="short\n")
    assert weak.exit_code == 2 and "at least 12" in weak.output
    unbound = cli("users", "add", "wang.wu", "--role", "operator", "--no-login", "-c", str(config))
    assert unbound.exit_code == 2 and "--systems" in unbound.output and "hall_platform" in unbound.output
    typo = cli("users", "add", "wang.wu", "--role", "operator", "--systems", "hall_platfrom", "--no-login",
                       "-c", str(config))
    assert typo.exit_code == 2 and "unknown system(s) hall_platfrom" in typo.output
    ok = cli("users", "add", "wang.wu", "--role", "operator", "--systems", "hall_platform,county_files",
                     "--password-stdin", "-c", str(config), stdin="a long enough passphrase\n")
    assert ok.exit_code == 0, ok.output
    assert _users(config)["wang.wu"]["systems"] == ["county_files", "hall_platform"]
    again = cli("users", "add", "wang.wu", "--role", "engineer", "--no-login", "-c", str(config))
    assert again.exit_code == 1 and "exists already" in again.output

    assert cli("users", "set-role", "wang.wu", "supervisor", "--systems", "archive", "-c",
                       str(config)).exit_code == 2  # only operators are bound
    assert cli("users", "set-role", "wang.wu", "supervisor", "-c", str(config)).exit_code == 0
    assert _users(config)["wang.wu"]["role"] == "supervisor" and _users(config)["wang.wu"]["systems"] is None
    changed = cli("users", "passwd", "wang.wu", "--generate-password", "-c", str(config))
    assert changed.exit_code == 0 and "0 open session(s) ended" in changed.stdout
    assert cli("users", "disable", "wang.wu", "-c", str(config)).exit_code == 0
    assert _users(config)["wang.wu"]["disabled"] is True
    assert cli("users", "passwd", "nobody", "--generate-password", "-c", str(config)).exit_code == 1


def test_tokens_are_shown_once_listed_without_their_secret_and_revoked_at_once(tmp_path) -> None:
    config = write_gateway_dir(tmp_path)
    assert cli("users", "add", "report.bot", "--role", "supervisor", "--no-login", "-c", str(config)).exit_code == 0
    made = cli("tokens", "create", "--user", "report.bot", "--label", "nightly report", "--expires", "30d",
               "-c", str(config))
    assert made.exit_code == 0, made.output
    token = next(line for line in made.output.splitlines() if line.startswith("gwt_"))
    token_id = token.split("_")[1]
    listed = cli("tokens", "list", "--json", "-c", str(config)).output
    (row,) = map(json.loads, listed.splitlines())
    assert row["token_id"] == token_id and row["state"] == "active" and row["label"] == "nightly report"
    assert token not in listed and token.split("_", 2)[2] not in listed
    assert cli("tokens", "create", "--user", "report.bot", "--expires", "5y", "-c", str(config)).exit_code == 2

    async def use_then_revoke() -> None:
        gw = Gateway(load_config(config))
        await gw.start()
        try:
            async with aiohttp.ClientSession() as http:
                bearer = {"Authorization": f"Bearer {token}"}
                async with http.get(gw.api.url + "/api/v1/audit", headers=bearer) as r:
                    assert r.status == 200
                # another process revokes it while the gateway runs
                revoked = await asyncio.to_thread(gateway_cmd, "tokens", "revoke", token_id, "-c", str(config))
                assert revoked.returncode == 0 and "revoked" in revoked.stdout
                async with http.get(gw.api.url + "/api/v1/audit", headers=bearer) as r:
                    assert r.status == 401
        finally:
            await gw.stop()

    asyncio.run(use_then_revoke())
    listed = cli("tokens", "list", "-c", str(config)).output
    assert "revoked" in listed and "127.0.0.1" in listed  # where it was last used from

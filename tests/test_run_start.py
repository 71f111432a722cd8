"""`gateway run` starts everything or nothing: a part that cannot start ends the process quickly and cleanly.

The real command runs as a subprocess in its own session, so the test can prove that
nothing of it (helper processes included) is left behind, and a local REST feed counts
whether any source pulled before the failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from gateway.app import Gateway, StartupError
from gateway.config import load_config

REPO = Path(__file__).resolve().parents[1]

CONFIG = """\
[gateway]
store = "sqlite:///gateway.db"

[api]
port = {port}

[supervision]
enabled = false

[sources.county]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
poll_interval = "50ms"
stable_for = "0s"

[sources.market]
adapter = "rest"
mapping = "mappings/hall_platform.in.yaml"
url = "{feed}"
poll_interval = "50ms"
{extra}
"""


class Feed:
    """A REST feed on loopback that counts the polls it gets."""

    def __init__(self) -> None:
        self.polls = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Feed:
        async def feed(request: web.Request) -> web.Response:
            self.polls += 1
            return web.json_response({"items": []})

        app = web.Application()
        app.router.add_get("/feed", feed)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/feed"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def _site(root: Path, port: int, feed: str, extra: str = "") -> Path:
    shutil.copytree(REPO / "mappings", root / "mappings")
    (root / "drop").mkdir()
    # A file waiting in the drop folder: claiming it would show the source had started.
    (root / "drop" / "waiting.xml").write_bytes(b"<APPROVEDATAINFOS></APPROVEDATAINFOS>")
    config = root / "gateway.toml"
    config.write_text(CONFIG.format(port=port, feed=feed, extra=extra), encoding="utf-8")
    return config


def _session_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_run_with_its_api_port_taken_exits_non_zero_within_seconds_leaving_nothing_behind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        async with Feed() as feed:
            config = _site(tmp_path, port, feed.url)
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "run", "-c", str(config), cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
            finally:
                if proc.returncode is None:
                    os.killpg(proc.pid, 9)
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.2)  # a source that had started would poll every 50 ms
            polls = feed.polls
    finally:
        taken.close()
    message = err.decode()
    assert proc.returncode == 1, message
    assert f"cannot start: the API cannot listen on 127.0.0.1:{port} ([api] host/port)" in message
    assert "Traceback" not in message
    assert elapsed < 10
    assert polls == 0  # no source pulled before (or after) the API failed
    assert (tmp_path / "drop" / "waiting.xml").exists()  # … and no file was claimed
    assert _session_gone(proc.pid)  # nothing of the gateway's session is left running
    with capsys.disabled():
        print(f"\n[gateway run, API port taken] exited {proc.returncode} after {elapsed:.2f}s, "
              f"{polls} polls, no process left")


async def test_a_source_that_cannot_start_stops_the_whole_gateway_and_frees_its_port(tmp_path: Path) -> None:
    soap = """
[sources.province]
adapter = "soap"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
wsdl = "builtin:provincial-exchange.wsdl"
pull = { operation = "NoSuchOperation", items_path = "RESULT" }
"""
    async with Feed() as feed:
        config = load_config(_site(tmp_path, 0, feed.url, soap))
        gw = Gateway(config)
        with pytest.raises(StartupError, match="source province: .*has no operation 'NoSuchOperation'"):
            await gw.start()
        await asyncio.sleep(0.2)
        assert feed.polls == 0
    assert gw.api is None and not gw.started
    assert (tmp_path / "drop" / "waiting.xml").exists()
    # Everything was let go: the store and its delivery lock can be taken again at once.
    fixed = Gateway(config.model_copy(update={"sources": {"county": config.sources["county"]}}))
    await fixed.start()
    try:
        assert fixed.started and fixed.api is not None
    finally:
        await fixed.stop()


async def test_a_pull_source_whose_secret_is_missing_fails_the_start_naming_it_and_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKET_FEED_TOKEN", raising=False)
    async with Feed() as feed:
        config = load_config(_site(tmp_path, 0, feed.url,
                                   'auth = { type = "bearer", token = { env = "MARKET_FEED_TOKEN" } }'))
        gw = Gateway(config)
        with pytest.raises(StartupError, match="source market: .*MARKET_FEED_TOKEN"):
            await gw.start()
        assert feed.polls == 0 and gw.api is None


async def test_a_store_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    async with Feed() as feed:
        config = _site(tmp_path, 0, feed.url)
        text = config.read_text(encoding="utf-8").replace("sqlite:///gateway.db", "sqlite:///blocked/gateway.db")
        config.write_text(text, encoding="utf-8")
        (tmp_path / "blocked").write_text("a file where the store's folder should be")
        gw = Gateway(load_config(config))
        with pytest.raises(StartupError, match="the store sqlite:///blocked/gateway.db cannot be opened"):
            await gw.start()
        assert feed.polls == 0 and gw.api is None

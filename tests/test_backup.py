"""`gateway backup`: a consistent copy of the SQLite store while the gateway runs, and a restore that keeps what
it replaces (the store and its seal witness) aside, refuses a running gateway, and leaves a verifiable trail."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner, Result
from e2e_site import Site, wait_until

from gateway.app import Gateway
from gateway.cli import main
from gateway.demo.counterparts import HallPlatform


def gateway(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


async def cli(*args: str) -> Result:
    """The command line from an async test: in a thread, as it runs its own event loop."""
    return await asyncio.to_thread(gateway, *args)


async def test_backup_while_running_then_restore_puts_that_moment_back_and_keeps_the_rest_aside(tmp_path) -> None:
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url)
        config = str(site.config_path)
        gw = Gateway(site.config())
        await gw.start()
        try:
            site.drop_cases(30)
            await wait_until(lambda: hall.unique >= 30, what="30 records delivered")
            made = await cli("backup", "create", "-c", config, str(tmp_path / "monday.db"))
            assert made.exit_code == 0, made.stderr
            assert "30 records" in made.stdout and "integrity ok" in made.stdout
            again = await cli("backup", "create", "-c", config, str(tmp_path / "monday.db"))
            assert again.exit_code == 1 and "a backup never overwrites one" in again.stderr
            refused = await cli("backup", "restore", "--force", "-c", config,
                                              str(tmp_path / "monday.db"))
            assert refused.exit_code == 1 and "a gateway is running" in refused.stderr
            site.drop_cases(20)  # after the backup: these the restore takes away
            await wait_until(lambda: hall.unique >= 50, what="20 more delivered")
        finally:
            await gw.stop()
    assert (tmp_path / "monday.db").stat().st_mode & 0o777 == 0o600
    assert site.audit_count("store_backup") == 1
    sealed = await cli("audit", "seal", "-c", config)  # seals after the backup: the witness sees them
    assert sealed.exit_code == 0, sealed.stderr

    without_force = await cli("backup", "restore", "-c", config, str(tmp_path / "monday.db"))
    assert without_force.exit_code == 1 and "run again with --force" in without_force.stderr
    restored = await cli("backup", "restore", "--force", "-c", config, str(tmp_path / "monday.db"))
    assert restored.exit_code == 0, restored.stderr
    assert site.scalar("SELECT count(*) FROM records WHERE system = 'county_drop'") == 30
    (aside,) = tmp_path.glob("gateway.db.before-restore-*[0-9]")
    (witness_aside,) = tmp_path.glob("audit-witness.jsonl.before-restore-*")
    assert site.audit_count("store_restored") == 1
    detail = site.audit_bodies("store_restored")[0]["detail"]
    assert detail["previous_store"] == aside.name and detail["previous_witness"] == witness_aside.name
    # the restored trail verifies and is sealed again; the replaced one verifies against its own witness
    verify = await cli("audit", "verify", "-c", config)
    assert verify.exit_code == 0 and "RESULT: OK" in verify.stdout, verify.stdout + verify.stderr
    assert (await cli("audit", "seal", "-c", config)).exit_code == 0
    old = await cli("audit", "verify", "-c", config, "--store", f"sqlite:///{aside}", "--witness", str(witness_aside))
    assert old.exit_code == 0 and "RESULT: OK" in old.stdout, old.stdout + old.stderr


def test_restore_refuses_a_file_that_is_not_a_sound_store(tmp_path) -> None:
    site = Site(tmp_path, "http://127.0.0.1:9/records")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    result = gateway("backup", "restore", "--force", "-c", str(site.config_path), str(junk))
    assert result.exit_code == 1 and "junk.db" in result.stderr
    assert not site.db.exists()  # nothing was put in place

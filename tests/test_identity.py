"""The identity contract, credentials, login throttling and forwarded headers, on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, config_from_dict
from gateway.security import credentials
from gateway.security.forwarded import TrustedProxies
from gateway.security.identity import (
    ANONYMOUS,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    AccessDenied,
    Identity,
    require,
)
from gateway.security.throttle import ACCOUNT_FREE, ADDRESS_LIMIT, LoginThrottle


def test_each_role_holds_exactly_the_permissions_the_roles_promise() -> None:
    engineer = Identity("eng", "engineer")
    operator = Identity("op", "operator", frozenset({"county_drop"}))
    supervisor = Identity("sup", "supervisor")
    auditor = Identity("aud", "auditor")
    assert engineer.can("deliveries:replay", "hall_platform") and engineer.can("configure")
    assert not engineer.can("personal:unmask")
    assert operator.can("deliveries:replay", "county_drop") and not operator.can("deliveries:replay", "hall_platform")
    assert operator.can("records:read") and not operator.can("audit:read") and not operator.can("configure")
    assert supervisor.can("audit:read") and supervisor.can("alerts:read") and not supervisor.can("deliveries:read")
    assert not supervisor.can("personal:unmask") and not supervisor.can("deliveries:replay")
    assert auditor.can("personal:unmask") and auditor.can("audit:read") and not auditor.can("deliveries:replay")
    assert set().union(*ROLE_PERMISSIONS.values()) == set(PERMISSIONS)


def test_an_operator_sees_only_its_systems_and_one_bound_to_none_sees_nothing() -> None:
    operator = Identity("op", "operator", frozenset({"a", "b"}))
    assert operator.visible_systems("records:read") == {"a", "b"}
    assert Identity("eng", "engineer").visible_systems("records:read") is None
    nothing = Identity("op2", "operator", frozenset())
    assert not nothing.can("records:read") and nothing.visible_systems("records:read") == frozenset()


def test_require_answers_401_for_nobody_and_403_naming_the_permission_for_the_wrong_role() -> None:
    with pytest.raises(AccessDenied) as nobody:
        require(ANONYMOUS, "records:read")
    assert nobody.value.status == 401
    with pytest.raises(AccessDenied) as wrong:
        require(Identity("op", "operator", frozenset({"a"})), "deliveries:replay", system="b")
    assert wrong.value.status == 403 and "bound to a" in wrong.value.message and "'b'" in wrong.value.message
    with pytest.raises(KeyError):
        Identity("eng", "engineer").can("delete:everything")


def test_an_unknown_role_in_the_store_grants_nothing() -> None:
    ghost = Identity("x", "admin")
    assert not ghost.authenticated and ghost.permissions == frozenset() and not ghost.can("records:read")


def test_passwords_are_argon2id_and_checked_against_policy() -> None:
    stored = credentials.hash_password_sync("a long enough passphrase")
    assert stored.startswith("$argon2id$")
    assert credentials.verify_password_sync(stored, "a long enough passphrase")
    assert not credentials.verify_password_sync(stored, "a long enough passphrasE")
    assert not credentials.verify_password_sync(None, "anything at all")
    for bad, why in (("short", "at least 12"), ("aaaaaaaaaaaaaaaa", "5 different"), ("my-zhangsan-2026!", "user name")):
        with pytest.raises(credentials.PasswordRejected, match=why):
            credentials.check_password_policy(bad, "zhangsan")
    assert len(credentials.generate_password()) == 20


def test_tokens_are_checked_by_their_hash_only() -> None:
    token_id, token = credentials.new_token()
    parsed = credentials.parse_token(token)
    assert parsed is not None and parsed.token_id == token_id
    stored = credentials.token_secret_hash(token_id, parsed.secret)
    assert parsed.secret not in stored and credentials.token_matches(stored, parsed)
    forged = credentials.parse_token(token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert forged is not None and not credentials.token_matches(stored, forged)
    assert credentials.parse_token("gwt_not-a-token") is None


def test_session_ids_are_stored_as_hashes_and_their_csrf_token_is_derived_not_stored() -> None:
    sid = credentials.new_session_id()
    assert credentials.session_key(sid) != sid and credentials.csrf_token_for(sid) not in (sid, credentials.session_key(sid))
    assert credentials.csrf_token_for(sid) == credentials.csrf_token_for(sid)
    assert credentials.csrf_token_for(credentials.new_session_id()) != credentials.csrf_token_for(sid)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_account_is_slowed_after_five_failures_with_a_doubling_delay_and_freed_by_a_success() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(ACCOUNT_FREE - 1):
        assert throttle.check("zhang", "10.0.0.1").allowed
        assert throttle.failed("zhang", "10.0.0.1").locked is None
    assert throttle.failed("zhang", "10.0.0.1").locked == "account"
    verdict = throttle.check("zhang", "10.0.0.2")  # from anywhere
    assert not verdict.allowed and 29 < verdict.retry_after <= 30
    assert throttle.check("li", "10.0.0.1").allowed  # other accounts are not affected
    clock.now += 31
    assert throttle.check("zhang", "10.0.0.1").allowed
    assert throttle.failed("zhang", "10.0.0.1").retry_after == 60  # doubled
    clock.now += 61
    throttle.succeeded("zhang")
    assert throttle.failed("zhang", "10.0.0.1").locked is None  # counting starts again


def test_an_address_guessing_many_accounts_is_locked_out() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    results = [throttle.failed(f"user{i}", "203.0.113.9") for i in range(ADDRESS_LIMIT)]
    assert results[-1].locked == "address" and all(r.locked is None for r in results[:-1])
    assert not throttle.check("anyone", "203.0.113.9").allowed
    assert throttle.check("anyone", "203.0.113.10").allowed


def test_forwarded_headers_count_only_from_a_configured_proxy() -> None:
    proxies = TrustedProxies(["10.0.0.5", "10.1.0.0/16"])
    # not a proxy (loopback included): the headers are ignored
    for peer in ("192.0.2.7", "127.0.0.1"):
        seen = proxies.client(peer, "http", ["198.51.100.1"], ["https"])
        assert (seen.remote, seen.scheme, seen.forwarded) == (peer, "http", False)
    seen = proxies.client("10.0.0.5", "http", ["198.51.100.1"], ["https"])
    assert (seen.remote, seen.scheme) == ("198.51.100.1", "https")
    # the client wrote the leftmost entry itself; the first address a trusted proxy did not add wins
    seen = proxies.client("10.0.0.5", "http", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], [])
    assert seen.remote == "198.51.100.1" and seen.scheme == "http"
    assert proxies.client("10.0.0.5", "http", ["not-an-address"], []).remote == "10.0.0.5"
    assert not TrustedProxies([]).client("10.0.0.5", "http", ["1.2.3.4"], []).forwarded


def test_a_trusted_proxy_that_is_not_an_address_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="every client"):
        config_from_dict({"api": {"trusted_proxies": ["0.0.0.0/0"]}}, base_dir=Path("."))
    with pytest.raises(ConfigError, match="trusted_proxies: 'proxy.local' is neither"):
        config_from_dict({"api": {"trusted_proxies": ["proxy.local"]}}, base_dir=Path("."))
    cfg = config_from_dict({"api": {"trusted_proxies": ["::1", "10.0.0.0/8"], "session_idle": "15m"}},
                           base_dir=Path("."))
    assert cfg.api.session_idle == 900.0 and cfg.api.session_lifetime == 12 * 3600.0


async def test_account_changes_are_audited_with_who_made_them_and_never_a_secret(store) -> None:
    from gateway.store.identity import IdentityError

    hashed = credentials.hash_password_sync("first password 2026")
    await store.add_user("wang.wu", "operator", ["county_drop"], "王五", hashed, "os:root")
    with pytest.raises(IdentityError, match="exists already"):
        await store.add_user("wang.wu", "engineer", None, None, None, "os:root")
    sid = credentials.new_session_id()
    await store.create_session(credentials.session_key(sid), "wang.wu", 3600, "10.0.0.9", "pytest")
    assert await store.count_sessions("wang.wu") == 1
    assert await store.set_user_password("wang.wu", credentials.hash_password_sync("second password 2026"),
                                         "os:root") == 1
    assert await store.find_session(credentials.session_key(sid)) is None  # a new password ends every session
    await store.set_user_role("wang.wu", "supervisor", None, "os:admin")
    token_id, token = credentials.new_token()
    await store.create_token(token_id, "h" * 64, "wang.wu", "report script", 2e9, "os:admin")
    await store.set_user_disabled("wang.wu", True, "os:admin")
    with pytest.raises(IdentityError, match="disabled"):
        await store.create_token("abcdefabcdef", "h" * 64, "wang.wu", "", 2e9, "os:admin")
    await store.revoke_token(token_id, "os:admin")
    with pytest.raises(IdentityError, match="revoked already"):
        await store.revoke_token(token_id, "os:admin")

    entries = [e.decoded() for e in await store.audit_entries()]
    changes = [(e["action"], e["detail"].get("change"), e["detail"].get("by")) for e in entries]
    assert changes == [("user_changed", "added", "os:root"), ("login", None, None),
                       ("user_changed", "password_set", "os:root"), ("user_changed", "role_set", "os:admin"),
                       ("token_changed", "created", "os:admin"), ("user_changed", "disabled", "os:admin"),
                       ("token_changed", "revoked", "os:admin")]
    text = str(entries)
    assert "王五" not in text and "$argon2" not in text and token not in text and sid not in text
    assert credentials.session_key(sid) not in text  # only a short prefix names a session

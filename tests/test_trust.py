"""The trust setting (``proxy.trust``): whose forwarding headers are believed, and which client they yield."""

from __future__ import annotations

import pytest

from proxy.messages import Headers
from proxy.trust import TrustedProxies, parse_address

DEFAULT = TrustedProxies.parse("127.0.0.1,::1")


@pytest.mark.parametrize(
    ("peer", "fields", "client", "chain"),
    [
        ("127.0.0.1", [], "127.0.0.1", ()),
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.9")], "203.0.113.9", ("203.0.113.9",)),
        ("127.0.0.6", [("X-Forwarded-For", "203.0.113.9")], "127.0.0.6", ()),
        ("10.0.0.5", [("X-Forwarded-For", "127.0.0.1")], "10.0.0.5", ()),
        ("127.0.0.1", [("X-Forwarded-For", "127.0.0.1, 203.0.113.9")], "203.0.113.9", ("127.0.0.1", "203.0.113.9")),
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.9, ::1")], "203.0.113.9", ("203.0.113.9", "::1")),
        ("127.0.0.1", [("X-Forwarded-For", "a"), ("X-Forwarded-For", "b")], "b", ("a", "b")),
        ("127.0.0.1", [("Forwarded", 'for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"')], "[2001:db8::1]:4711",
         ("192.0.2.60", "[2001:db8::1]:4711")),
        ("::ffff:127.0.0.1", [("X-Forwarded-For", "198.51.100.7")], "198.51.100.7", ("198.51.100.7",)),
    ],
    ids=[
        "no-chain", "trusted-peer", "untrusted-sidecar-ignored", "untrusted-peer-spoofing-loopback",
        "rightmost-untrusted-wins", "trusted-hops-skipped", "several-fields", "rfc7239-forwarded-for",
        "ipv4-mapped-peer",
    ],
)  # fmt: skip
def test_resolve_rightmost_untrusted(
    peer: str, fields: list[tuple[str, str]], client: str, chain: tuple[str, ...]
) -> None:
    resolved = DEFAULT.resolve(peer, Headers(fields))
    assert (resolved.client, resolved.chain) == (client, chain)


def test_forwarded_proto_believed_only_from_trusted_peers() -> None:
    fields = Headers([("X-Forwarded-Proto", "https")])
    assert DEFAULT.resolve("127.0.0.1", fields).scheme == "https"
    assert DEFAULT.resolve("127.0.0.6", fields).scheme is None
    assert DEFAULT.resolve("127.0.0.1", Headers([("X-Forwarded-Proto", "gopher")])).scheme is None


def test_trusted_proxies_setting() -> None:
    wide = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8 ::1")
    assert wide.trusts("10.1.2.3") and wide.trusts("::1") and not wide.trusts("127.0.0.6")
    assert not TrustedProxies.parse("none").trusts("127.0.0.1")
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies.parse("127.0.0.1,localhost")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("192.0.2.1:80", "192.0.2.1"), ('"[::1]:80"', "::1"), ("unknown", None), (None, None)],
)
def test_parse_address(text: str | None, expected: str | None) -> None:
    found = parse_address(text)
    assert (str(found) if found is not None else None) == expected


def test_trusted_proxies_flag_and_variable(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.cli import main
    from proxy.config import Settings
    from proxy.errors import ConfigError

    with pytest.raises(SystemExit) as refused:  # a bad value is an argparse error (the flag's type parses it)
        main(["serve", "--upstream", "http://127.0.0.1:9", "--trusted-proxies", "localhost"])
    assert refused.value.code == 2
    assert "--trusted-proxies: not an IP address or CIDR: 'localhost'" in capsys.readouterr().err
    monkeypatch.setenv("CACHEPROXY_TRUSTED_PROXIES", "localhost")
    with pytest.raises(SystemExit) as refused:
        main(["serve", "--upstream", "http://127.0.0.1:9"])
    assert refused.value.code == 2
    assert "CACHEPROXY_TRUSTED_PROXIES='localhost': not an IP address or CIDR" in capsys.readouterr().err
    monkeypatch.delenv("CACHEPROXY_TRUSTED_PROXIES")
    with pytest.raises(ConfigError, match="--admin-hosts: not a host name: 'a/b'"):
        Settings(upstream="http://127.0.0.1:9", admin_hosts="cache.internal,a/b")
    settings = Settings(upstream="http://127.0.0.1:9", trusted_proxies="10.0.0.0/8", admin_hosts="cache.internal")
    again = Settings.from_env(settings.to_env())  # how --workers N hands them to each worker
    assert (again.trusted_proxies, again.admin_hosts) == ("10.0.0.0/8", "cache.internal")
    assert again.trusted.trusts("10.2.3.4") and not again.trusted.trusts("127.0.0.1")
    assert Settings(upstream="http://127.0.0.1:9").trusted.trusts("::1")

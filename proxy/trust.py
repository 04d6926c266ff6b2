"""Whom the proxy believes: the one trust setting (``--trusted-proxies``) and the client address it yields.

A peer listed in the setting (default: 127.0.0.1 and ::1, CIDRs allowed) is a proxy in front of us: its
``X-Forwarded-For`` (or, without one, ``Forwarded: for=``, RFC 7239) and ``X-Forwarded-Proto`` are believed. The
client is found by walking the chain from the right, past trusted hops, to the first address that is not trusted
(the usual "rightmost untrusted" rule: a client can write anything on the left of the chain, but not on the right of
its own address). Anything an untrusted peer says about forwarding is ignored, and not passed on either.

The same setting decides who is local for the admin surface and ``Cache-Debug``: the resolved client must itself be a
trusted address. A sidecar at 127.0.0.6 is therefore not the operator unless it is listed, and a trusted proxy that
forwards ``X-Forwarded-For: 203.0.113.9`` makes the request 203.0.113.9's, never local.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from proxy.messages import Headers

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_TRUSTED = "127.0.0.1,::1"
VERDICTS_LIMIT = 4096  # remembered trust verdicts per address text (peers repeat: load balancers, sidecars)


def parse_address(text: str | None) -> Address | None:
    """An IP address from a socket peer or a forwarding header; IPv4-mapped IPv6 becomes IPv4; else ``None``."""
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarding: for="[2001:db8::1]:4711"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # an IPv4 address with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str | None) -> bool:
    """A client on this machine (127.0.0.0/8, ::1, or ::ffff:127.x)."""
    address = parse_address(host)
    return address is not None and address.is_loopback


@dataclass(frozen=True, slots=True)
class Resolved:
    """The client a request is from, as far as the trusted hops vouch for it.

    ``chain``: the forwarded-for addresses to pass upstream before the peer (empty unless the peer is trusted);
    ``scheme``: the scheme the first trusted hop says the client used, or ``None``.
    """

    client: str | None
    chain: tuple[str, ...] = ()
    scheme: str | None = None


class TrustedProxies:
    """The parsed ``--trusted-proxies`` list."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self._verdicts: dict[str, bool] = {}

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """``127.0.0.1,::1,10.0.0.0/8``; ``none`` (or empty) trusts nobody. Raises ``ValueError`` on a bad item."""
        items = [item.strip() for item in text.replace(" ", ",").split(",") if item.strip()]
        if items == ["none"]:
            return cls(())
        networks: list[Network] = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as error:
                raise ValueError(f"not an IP address or CIDR: {item!r}") from error
        return cls(tuple(networks))

    def trusts(self, host: str | None) -> bool:
        """Whether ``host`` (an address text) is in the setting; verdicts are memoised (parsing an address is slow)."""
        if not host:
            return False
        verdict = self._verdicts.get(host)
        if verdict is None:
            address = parse_address(host)
            verdict = address is not None and any(address in network for network in self.networks)
            if len(self._verdicts) >= VERDICTS_LIMIT:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def resolve(self, peer: str | None, headers: Headers) -> Resolved:
        """Walk the forwarding chain from the right while each hop is trusted (see the module docstring)."""
        if not self.trusts(peer):
            return Resolved(peer)
        if "x-forwarded-for" in headers:
            chain = headers.get_list("x-forwarded-for")
        elif "forwarded" in headers:
            chain = _forwarded_for(headers)
        else:
            chain = []
        client = peer
        for hop in reversed(chain):
            client = hop
            if not self.trusts(hop):
                break
        scheme = None
        if "x-forwarded-proto" in headers:
            proto = headers.get_list("x-forwarded-proto")
            scheme = proto[-1].lower() if proto and proto[-1].lower() in ("http", "https") else None
        return Resolved(client, tuple(chain), scheme)


def _forwarded_for(headers: Headers) -> list[str]:
    """The ``for=`` values of ``Forwarded`` (RFC 7239 §5.2), in order; obfuscated or unknown ones kept as text."""
    out: list[str] = []
    for element in headers.get_list("forwarded"):
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.strip().lower() == "for" and value:
                out.append(value.strip().strip('"'))
    return out

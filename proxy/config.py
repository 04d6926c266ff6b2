"""Settings of one proxy process, from the command line or ``CACHEPROXY_*`` environment variables.

Workers started by uvicorn get their settings through the environment, so ``Settings.from_env`` is the one way a
worker learns its configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from proxy.errors import ConfigError
from proxy.heap import MAX_MMAP_THRESHOLD
from proxy.rules.model import parse_duration as rules_duration
from proxy.rules.model import parse_size as rules_size
from proxy.storage.eviction import DEFAULT_POLICY, check_policy
from proxy.trust import DEFAULT_TRUSTED, TrustedProxies


def parse_size(text: str) -> int:
    """``256MiB``, ``512KiB``, ``1GiB`` or a plain number of bytes: the same sizes as in rules.yaml."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    try:
        return rules_size(text)
    except ValueError as error:  # pydantic's PydanticCustomError is a ValueError
        raise ConfigError(f"not a size: {text!r} (use e.g. 256MiB, 512KiB, 1GiB)") from error


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, any case: how every boolean ``CACHEPROXY_*`` variable reads."""
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected one of 1/true/yes/on or 0/false/no/off")


def parse_seconds(text: str) -> float:
    """A positive number of seconds: ``5``, ``2.5``, or a rules.yaml duration such as ``250ms`` or ``1m``."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = rules_duration(str(text))
        except ValueError:
            value = -1.0
    if not (0 < value < float("inf")):
        raise ValueError("expected a positive number of seconds, e.g. 5, 2.5 or 250ms")
    return value


def parse_port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number from 0 to 65535, e.g. 8080")
    return value


def parse_count(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("expected a whole number of at least 1, e.g. 4")
    return value


def parse_trusted_proxies(text: str) -> str:
    """``--trusted-proxies``: addresses or CIDRs, comma-separated, or ``none``; the text itself when it parses."""
    try:
        TrustedProxies.parse(str(text))
    except ValueError as error:
        raise ValueError(f"{error} (use e.g. 127.0.0.1,::1,10.0.0.0/8, or none)") from None
    return str(text)


HOST_NAME = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]+)?")


def parse_admin_hosts(text: str) -> str:
    """``--admin-hosts``: Host names (a port is ignored), comma-separated; the text itself when each is a name."""
    for item in str(text).replace(" ", ",").split(","):
        if item.strip() and not HOST_NAME.fullmatch(item.strip()):
            raise ValueError(f"not a host name: {item.strip()!r} (use e.g. cache.internal,10.0.0.5)")
    return str(text)


def store_names(store: str) -> frozenset[str]:
    """The store names a ``--store`` setting opens (``proxy.app.open_stores`` opens exactly these)."""
    return frozenset({"memory"} if store == "memory" else {"memory", "redis"})


@dataclass(frozen=True)
class Settings:
    upstream: str
    rules: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "memory"
    memory_budget: int = 256 * 1024 * 1024
    l1_budget: int = 0
    mmap_threshold: int = 128 * 1024  # glibc's mmap threshold, fixed (proxy.heap); 0 leaves it to glibc
    workers: int = 1
    preserve_host: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    admin_prefix: str = "/_cacheproxy"
    admin_token: str | None = None
    allow_purge_method: bool = False
    log_format: str = "text"
    access_log: bool = True
    upstream_ca: str | None = None  # a PEM file of CA certificates for an https:// upstream (default: the system's)
    access_log_file: str | None = None  # None: stderr with the other logs; "-": stdout; else a file (appended to)
    eviction: str = DEFAULT_POLICY
    # per-connection limits (proxy/limits.py) and the upstream pool (proxy/upstream.py)
    max_url_bytes: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    head_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_connections: int = 4096
    upstream_pool_size: int = 256
    upstream_pool_timeout: float = 1.0
    trusted_proxies: str = DEFAULT_TRUSTED  # whose forwarding headers are believed, and who is local (proxy.trust)
    admin_hosts: str = ""  # Host names the admin pages answer besides the loopback ones (against DNS rebinding)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--upstream must be an http:// or https:// URL, got {self.upstream!r}")
        if not (self.store == "memory" or self.store.startswith(("redis://", "rediss://", "redis+cluster://"))):
            raise ConfigError(f"--store must be memory, redis://… or redis+cluster://…, got {self.store!r}")
        for name in ("connect_timeout", "read_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive number of seconds")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if not 0 <= self.mmap_threshold <= MAX_MMAP_THRESHOLD:
            raise ConfigError("--mmap-threshold must be 0 (glibc's own) to 32MiB")
        if self.workers > 1 and self.store == "memory":
            raise ConfigError(
                "--workers > 1 needs a shared store (--store redis://…): with the per-process memory store each "
                "worker would keep its own cache, and a purge could not reach the other workers"
            )
        if self.upstream_ca is not None and not os.path.isfile(self.upstream_ca):
            raise ConfigError(f"--upstream-ca: no such file: {self.upstream_ca!r}")
        if self.log_format not in ("text", "json"):
            raise ConfigError("--log-format must be text or json")
        if not self.admin_prefix.startswith("/") or self.admin_prefix.endswith("/"):
            raise ConfigError("--admin-prefix must start with / and not end with /")
        try:
            check_policy(self.eviction)
        except ValueError as error:
            raise ConfigError(f"--eviction: {error}") from error
        self._check_limits()
        try:
            parse_trusted_proxies(self.trusted_proxies)
        except ValueError as error:
            raise ConfigError(f"--trusted-proxies: {error}") from error
        try:
            parse_admin_hosts(self.admin_hosts)
        except ValueError as error:
            raise ConfigError(f"--admin-hosts: {error}") from error

    @cached_property
    def trusted(self) -> TrustedProxies:
        """The parsed ``--trusted-proxies``."""
        return TrustedProxies.parse(self.trusted_proxies)

    def _check_limits(self) -> None:
        positive = ("max_url_bytes", "max_header_bytes", "max_headers", "max_connections", "upstream_pool_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("head_timeout", "keepalive_timeout", "upstream_pool_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive number of seconds")

    @property
    def store_names(self) -> frozenset[str]:
        """The stores a route may pick with ``store:``: always ``memory``, ``redis`` when ``--store`` names one."""
        return store_names(self.store)

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` rebuild these settings (for worker processes)."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            env[f"CACHEPROXY_{f.name.upper()}"] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return env

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"CACHEPROXY_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, str(f.type), raw)
        if "upstream" not in values:
            raise ConfigError("no upstream: pass --upstream URL or set CACHEPROXY_UPSTREAM")
        return cls(**values)  # type: ignore[arg-type]


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a number") from None


_PARSERS: dict[str, Callable[[str], object]] = {
    "port": parse_port,
    "workers": parse_count,
    "connect_timeout": parse_seconds,
    "read_timeout": parse_seconds,
    "trusted_proxies": parse_trusted_proxies,
    "admin_hosts": parse_admin_hosts,
}


def _convert(name: str, type_name: str, raw: str) -> object:
    """One ``CACHEPROXY_*`` value; a bad one is a ``ConfigError`` naming the variable and the expected form."""
    if name in ("memory_budget", "l1_budget", "mmap_threshold", "max_url_bytes", "max_header_bytes"):
        return parse_size(raw)
    parse = _PARSERS.get(name)
    if parse is None:
        kinds: list[tuple[str, Callable[[str], object]]] = [
            ("bool", parse_bool),
            ("int", _whole),
            ("float", _number),
            ("Path", Path),
        ]
        parse = next((f for kind, f in kinds if kind in type_name), str)
    try:
        return parse(raw)
    except ValueError as error:
        raise ConfigError(f"CACHEPROXY_{name.upper()}={raw!r}: {error}") from error

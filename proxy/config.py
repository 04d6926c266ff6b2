"""Settings of one proxy process, from the command line or ``CACHEPROXY_*`` environment variables.

Workers started by uvicorn get their settings through the environment, so ``Settings.from_env`` is the one way a
worker learns its configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from proxy.errors import ConfigError
from proxy.rules.model import parse_size as rules_size
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


@dataclass(frozen=True)
class Settings:
    upstream: str
    rules: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "memory"
    memory_budget: int = 256 * 1024 * 1024
    l1_budget: int = 0
    workers: int = 1
    preserve_host: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    admin_prefix: str = "/_cacheproxy"
    admin_token: str | None = None
    allow_purge_method: bool = False
    log_format: str = "text"
    access_log: bool = True
    trusted_proxies: str = DEFAULT_TRUSTED  # whose forwarding headers are believed, and who is local (proxy.trust)
    admin_hosts: str = ""  # Host names the admin pages answer besides the loopback ones (against DNS rebinding)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--upstream must be an http:// or https:// URL, got {self.upstream!r}")
        if not (self.store == "memory" or self.store.startswith(("redis://", "rediss://", "redis+cluster://"))):
            raise ConfigError(f"--store must be memory, redis://… or redis+cluster://…, got {self.store!r}")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.workers > 1 and self.store == "memory":
            raise ConfigError(
                "--workers > 1 needs a shared store (--store redis://…): with the per-process memory store each "
                "worker would keep its own cache, and a purge could not reach the other workers"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError("--log-format must be text or json")
        if not self.admin_prefix.startswith("/") or self.admin_prefix.endswith("/"):
            raise ConfigError("--admin-prefix must start with / and not end with /")
        try:
            TrustedProxies.parse(self.trusted_proxies)
        except ValueError as error:
            raise ConfigError(f"--trusted-proxies: {error} (use e.g. 127.0.0.1,::1,10.0.0.0/8, or none)") from error

    @cached_property
    def trusted(self) -> TrustedProxies:
        """The parsed ``--trusted-proxies``."""
        return TrustedProxies.parse(self.trusted_proxies)

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


def _convert(name: str, type_name: str, raw: str) -> object:
    if name in ("memory_budget", "l1_budget"):
        return parse_size(raw)
    if "bool" in type_name:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if "int" in type_name:
        try:
            return int(raw)
        except ValueError as error:
            raise ConfigError(f"CACHEPROXY_{name.upper()} must be a whole number, got {raw!r}") from error
    if "float" in type_name:
        try:
            return float(raw)
        except ValueError as error:
            raise ConfigError(f"CACHEPROXY_{name.upper()} must be a number, got {raw!r}") from error
    if "Path" in type_name:
        return Path(raw)
    return raw

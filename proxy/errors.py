"""The proxy's exception tree. Third-party errors are mapped to these once, at the seam that meets them.

CacheProxyError
├── ConfigError                 bad command line or environment; the process refuses to start
├── RulesError                  a rules.yaml that does not validate; carries every problem found
├── StorageError                a store that failed or timed out; callers treat it as a miss
│   └── InvalidationQueued      a purge or invalidation it could not apply now: queued, applied when it is back
└── UpstreamError               the origin could not be reached or broke the exchange
    ├── UpstreamConnectError    refused, reset, DNS: answered 502
    ├── UpstreamTimeout         connect or read timeout: answered 504
    └── UpstreamProtocolError   malformed response or a body cut short: 502 (or a broken stream)
"""

from __future__ import annotations

from collections.abc import Sequence


class CacheProxyError(Exception):
    """Base of every error the proxy raises on purpose."""


class ConfigError(CacheProxyError):
    pass


class RulesError(CacheProxyError):
    """Invalid rules. ``problems`` holds one ``file:line:col: field: message`` line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StorageError(CacheProxyError):
    pass


class InvalidationQueued(StorageError):
    """The store was unreachable: the purge or invalidation did not happen now, and is queued to be applied when the
    store is back (``proxy.storage.redis_recovery``). A purge answers 503 with ``"queued": true``."""


class UpstreamError(CacheProxyError):
    status = 502
    detail = "upstream-error"


class UpstreamConnectError(UpstreamError):
    status = 502
    detail = "connect-failed"


class UpstreamTimeout(UpstreamError):
    status = 504
    detail = "timeout"


class UpstreamProtocolError(UpstreamError):
    status = 502
    detail = "protocol-error"


class UpstreamBusy(UpstreamError):
    """Every pooled connection to the origin stayed busy for the whole bounded wait (shed, not queued)."""

    status = 503
    detail = "pool-exhausted"

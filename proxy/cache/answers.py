"""Deprecated module name: the answer value lives in ``proxy.cache.answer``. Kept importable while the edge moves."""

from proxy.cache.answer import Answer, CacheOutcome

__all__ = ["Answer", "CacheOutcome"]

"""Eviction policies of the byte-bounded memory caches: ``s3fifo`` (default), ``lru``, ``lfu``, ``fifo``, ``sieve``.

``make_policy(name, budget)`` builds one; ``POLICIES`` names them in the order the CLI lists them.
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

from proxy.storage.eviction.base import EvictionPolicy
from proxy.storage.eviction.fifo import FIFO
from proxy.storage.eviction.lfu import LFU
from proxy.storage.eviction.lru import LRU
from proxy.storage.eviction.s3fifo import S3FIFO
from proxy.storage.eviction.sieve import SIEVE

__all__ = [
    "DEFAULT_POLICY",
    "FIFO",
    "LFU",
    "LRU",
    "POLICIES",
    "S3FIFO",
    "SIEVE",
    "EvictionPolicy",
    "check_policy",
    "make_policy",
]

DEFAULT_POLICY = "s3fifo"
POLICIES: dict[str, type[EvictionPolicy[Any]]] = {
    "s3fifo": S3FIFO,
    "lru": LRU,
    "lfu": LFU,
    "fifo": FIFO,
    "sieve": SIEVE,
}


def check_policy(name: str) -> str:
    """``name`` when it names a policy; otherwise ``ValueError`` listing them, with a "did you mean"."""
    if name in POLICIES:
        return name
    close = get_close_matches(name, POLICIES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"unknown eviction policy {name!r}{hint}: choose one of {', '.join(POLICIES)}")


def make_policy(name: str, budget: int) -> EvictionPolicy[Any]:
    """A fresh policy ``name`` for a cache bounded by ``budget`` bytes (or weight units)."""
    return POLICIES[check_policy(name)](budget)

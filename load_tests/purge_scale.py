"""Purge cost against the size of the store (issue 14 §4): a prefix or tag purge of 1,000 entries among 1,000,000.

Starts its own ``redis-server`` (free port, no persistence), loads ``--entries`` entries through pipelines of the
store's own put script (the KEYS and ARGV ``RedisStorage.store`` sends: the entry and its purge indexes), then times
purges through ``RedisStorage`` as the admin endpoint calls them. Entry ``i`` is ``http://o.test/s/<i % 1000>/<i>``
with the tag ``t<i % 1000>``, a 64-byte body and a ttl of an hour, so ``/s/17/`` and ``t17`` each name 1,000
entries, and ``/s/3`` names 111,000 (``/s/3/``, ``/s/30/``..``/s/39/``, ``/s/300/``..``/s/399/``). Each kind of
purge runs on ``--repeat`` different sections and the median and the slowest are reported; "again" purges the same
sections a second time (nothing left to remove: the index still lists them until they expire, so this is what a
stale member costs). The last Redis row times a bare ``SCAN`` of the whole keyspace, which the purge did before
(it also read a field of every key it met): a lower bound of the old cost.

With ``--memory-entries N`` (default 1,000,000; 0 skips it) the same entries go into a ``MemoryStorage`` and its
prefix purge is timed beside what the old one did first (``url_path`` of every stored entry).

    python -m load_tests.purge_scale                          # 1,000,000 entries in each store
    python -m load_tests.purge_scale --entries 100000 --memory-entries 0
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from load_tests.common import Processes, start_redis, write_result
from proxy.messages import Entry, Headers, ResponseHead
from proxy.storage import redis_layout as layout
from proxy.storage.memory import MemoryStorage
from proxy.storage.redis import RedisStorage
from proxy.storage.redis_client import connect
from proxy.storage.urls import url_path

SECTIONS = 1000
TTL = 3600.0
BATCH = 5000  # put scripts per pipeline while loading


@dataclass(frozen=True)
class Row:
    store: str
    purge: str
    removed: int  # per run
    median_ms: float
    max_ms: float


def entry(i: int, template: Entry) -> Entry:
    return replace(template, key=f"c:{i:032x}", url=f"http://o.test/s/{i % SECTIONS}/{i}", tags=(f"t{i % SECTIONS}",))


def template() -> Entry:
    head = ResponseHead(200, Headers([("Content-Type", "application/json"), ("Cache-Control", "max-age=3600")]))
    return Entry(
        key="",
        url="",
        head=head,
        body=b"x" * 64,
        request_time=time.time(),
        response_time=time.time(),
        freshness=TTL,
    )


async def load_redis(store: RedisStorage, count: int) -> float:
    """Put ``count`` entries with the store's script in pipelines of ``BATCH``; returns the seconds it took."""
    sha = await store.client.script_load(layout.PUT)
    base = template()
    began = time.perf_counter()
    for start in range(0, count, BATCH):
        pipe = store.client.pipeline(transaction=False)
        for i in range(start, min(start + BATCH, count)):
            item = entry(i, base)
            keys = layout.put_keys(item.key, item.tags)
            pipe.evalsha(sha, len(keys), *keys, *store.put_arguments(item.key, item, TTL))
        await pipe.execute()
        if start // BATCH % 20 == 19:
            print(f"  loaded {start + BATCH:,} entries into Redis", file=sys.stderr)
    return time.perf_counter() - began


async def timed(runs: list[Callable[[], Awaitable[int]]]) -> tuple[int, list[float]]:
    removed: set[int] = set()
    seconds = []
    for run in runs:
        began = time.perf_counter()
        removed.add(await run())
        seconds.append(time.perf_counter() - began)
    if len(removed) != 1:
        raise RuntimeError(f"the runs removed different numbers of entries: {sorted(removed)}")
    return removed.pop(), seconds


def row(store: str, purge: str, result: tuple[int, list[float]]) -> Row:
    removed, seconds = result
    return Row(store, purge, removed, statistics.median(seconds) * 1000, max(seconds) * 1000)


async def measure_redis(url: str, count: int, repeat: int) -> tuple[list[Row], dict[str, Any]]:
    client = connect(url, connect_timeout=5.0, socket_timeout=600.0)  # MEMORY USAGE of big sets takes seconds
    store = RedisStorage(client, read_timeout=5.0, write_timeout=5.0, purge_budget=600.0)
    try:
        loaded = await load_redis(store, count)
        facts = await index_memory(store, count, loaded)
        prefixes = [f"/s/{SECTIONS // 2 + n}/" for n in range(repeat)]
        tags = [f"t{SECTIONS // 4 + n}" for n in range(repeat)]
        rows = [
            row("redis", "prefix /s/N/", await timed([lambda p=p: store.delete_prefix(p) for p in prefixes])),
            row("redis", "prefix /s/N/ again", await timed([lambda p=p: store.delete_prefix(p) for p in prefixes])),
            row("redis", "tag tN", await timed([lambda t=t: store.delete_tag(t) for t in tags])),
            row("redis", "tag tN again", await timed([lambda t=t: store.delete_tag(t) for t in tags])),
            row("redis", "prefix /nothing/", await timed([lambda: store.delete_prefix("/nothing/")] * repeat)),
            row("redis", "prefix /s/3", await timed([lambda: store.delete_prefix("/s/3")])),
            row("redis", "SCAN of every key (old)", await timed([lambda: scan_everything(store)])),
        ]
        return rows, facts
    finally:
        await store.close()


async def scan_everything(store: RedisStorage) -> int:
    """The walk the SCAN-based purge made before any of its own work: the number of entry hashes it met."""
    seen = 0
    async for _ in store.client.scan_iter(match=layout.SCAN_PATTERN, count=1000, _type="hash"):
        seen += 1
    return seen


async def index_memory(store: RedisStorage, count: int, loaded: float) -> dict[str, Any]:
    """Redis' memory, and the part of it the purge indexes take (``MEMORY USAGE`` of every index key)."""
    client = store.client
    names = [layout.path_index(s) for s in range(layout.INDEX_SHARDS)]
    names += [layout.path_expiry(s) for s in range(layout.INDEX_SHARDS)]
    names += [layout.tag_index(f"t{n}") for n in range(SECTIONS)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    sizes = await pipe.execute()
    info = await client.info("memory")
    paths = sum(int(size or 0) for size in sizes[: 2 * layout.INDEX_SHARDS])
    tags = sum(int(size or 0) for size in sizes[2 * layout.INDEX_SHARDS :])
    return {
        "entries": count,
        "load_seconds": round(loaded, 1),
        "used_memory": int(info["used_memory"]),
        "path_index_bytes": paths,
        "tag_index_bytes": tags,
    }


async def measure_memory(count: int, repeat: int) -> list[Row]:
    store = MemoryStorage(64 * 1024**3)
    base = template()
    for i in range(count):
        item = entry(i, base)
        await store.put(item.key, item, TTL)
    prefixes = [f"/s/{SECTIONS // 2 + n}/" for n in range(repeat)]

    async def old_walk(prefix: str) -> int:
        return sum(1 for slot in store._slots.values() if url_path(slot.entry.url).startswith(prefix))

    old = await timed([lambda p=p: old_walk(p) for p in prefixes])
    rows = [row("memory", "prefix /s/N/", await timed([lambda p=p: store.delete_prefix(p) for p in prefixes]))]
    rows.append(row("memory", "url_path of every entry (old)", old))
    await store.close()
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'store':<8} {'purge':<30} {'removed':>9} {'median ms':>10} {'max ms':>9}"]
    lines += [f"{r.store:<8} {r.purge:<30} {r.removed:>9,} {r.median_ms:>10.1f} {r.max_ms:>9.1f}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in Redis (default 1,000,000)")
    parser.add_argument("--memory-entries", type=int, default=1_000_000, help="entries in the memory store (0: skip)")
    parser.add_argument("--repeat", type=int, default=5, help="sections purged per kind (default 5)")
    args = parser.parse_args(argv)
    if args.entries < SECTIONS or not 0 < args.repeat <= SECTIONS // 4:
        parser.error(f"--entries must be at least {SECTIONS}, --repeat between 1 and {SECTIONS // 4}")
    with Processes() as procs:
        url = start_redis(procs, cpu=None)
        rows, facts = asyncio.run(measure_redis(url, args.entries, args.repeat))
    if args.memory_entries:
        rows += asyncio.run(measure_memory(args.memory_entries, args.repeat))
    mib = 1024 * 1024
    print(
        f"Redis: {facts['entries']:,} entries loaded in {facts['load_seconds']} s; used_memory "
        f"{facts['used_memory'] / mib:,.0f} MiB, of which the path index {facts['path_index_bytes'] / mib:,.0f} MiB "
        f"and the tag indexes {facts['tag_index_bytes'] / mib:,.0f} MiB"
    )
    print(table(rows))
    path = write_result("purge_scale", {"redis": facts, "memory_entries": args.memory_entries, "rows": rows})
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Memory stays bounded by the budget (issue 9 §3): distinct large objects, each fetched twice, through one proxy.

A small threaded origin answers every ``/obj/N`` with ``--size`` cacheable bytes; one keep-alive client fetches
``--count`` distinct objects, each twice in a row (a miss that stores it, then a hit), through
``cacheproxy serve --memory-budget BUDGET``. The proxy's resident set (``VmRSS``) and its peak (``VmHWM``) are read
from ``/proc/<pid>/status`` and compared with the goal ``budget x 1.2 + 60 MiB``. Before the fix the hit path's memo
kept every evicted entry alive (3 GiB at 3,000 x 1 MiB; 361 MiB at 1,000 x 256 KiB).

    python -m load_tests.memory_bound                       # 3,000 x 1 MiB at 16 MiB (the issue's figure)
    python -m load_tests.memory_bound --count 1000 --size 256KiB --budget 8MiB

The CI test (``tests/security/test_memory_bound.py``) calls :func:`measure` at the small scale.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from load_tests.common import HOST, Processes, free_port
from proxy.config import parse_size

MiB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    count: int
    size: int
    budget: int
    rss: int  # bytes, after the run
    peak: int  # bytes, the process's high-water mark
    stored_entries: int
    stored_bytes: int
    hits: int

    @property
    def limit(self) -> int:
        """The goal of issue 9 §3: budget x 1.2 + 60 MiB."""
        return int(self.budget * 1.2) + 60 * MiB


@contextmanager
def origin(size: int) -> Iterator[str]:
    """A keep-alive HTTP/1.1 origin in a thread: every GET gets ``size`` bytes, fresh for a minute."""
    body = b"x" * size

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall per miss

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Cache-Control", "max-age=60")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"{field} not in /proc/{pid}/status")


def fetch_all(port: int, count: int, rounds: int) -> int:
    """Fetch each object ``rounds`` times in a row (a miss that stores it, then hits); return the hits seen."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    hits = 0
    try:
        for i in range(count):
            for _ in range(rounds):
                conn.request("GET", f"/obj/{i}")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"/obj/{i}: {response.status}")
                hits += "hit" in (response.getheader("cache-status") or "")
    finally:
        conn.close()
    return hits


def measure(count: int, size: int, budget: int, rounds: int = 2) -> Measured:
    """Run the proxy in front of the origin, fetch ``count`` objects ``rounds`` times, and read its memory."""
    with origin(size) as upstream, Processes() as procs:
        port = free_port()
        args = [sys.executable, "-m", "proxy", "serve", "--upstream", upstream, "--host", HOST, "--port", str(port),
                "--memory-budget", str(budget), "--no-access-log"]  # fmt: skip
        procs.start("proxy", args, cpu=None, ready_url=f"http://{HOST}:{port}/_cacheproxy/healthz")
        pid = procs.started[0][1].pid
        hits = fetch_all(port, count, rounds)
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.request("GET", "/_cacheproxy/stats.json")
        stats = json.loads(conn.getresponse().read())
        conn.close()
        memory = next(s for s in stats["stores"] if s["name"] == "memory")
        return Measured(
            count, size, budget, status_bytes(pid, "VmRSS"), status_bytes(pid, "VmHWM"), memory["entries"],
            memory["bytes"], hits,
        )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--size", default="1MiB")
    parser.add_argument("--budget", default="16MiB")
    args = parser.parse_args()
    result = measure(args.count, parse_size(args.size), parse_size(args.budget))
    print(
        f"{result.count} objects of {result.size} B, budget {result.budget / MiB:.0f} MiB: "
        f"RSS {result.rss / MiB:.1f} MiB, peak {result.peak / MiB:.1f} MiB, goal ≤ {result.limit / MiB:.1f} MiB; "
        f"store holds {result.stored_entries} entries, {result.stored_bytes / MiB:.1f} MiB; {result.hits} hits"
    )
    return 0 if result.peak <= result.limit else 1


if __name__ == "__main__":
    sys.exit(main())

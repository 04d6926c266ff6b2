"""The proxy's own CPU time per request, without a server in front (issue 11 item 3): the ASGI app driven in-process.

Under wrk, a request's figure mixes the proxy's work with uvicorn's and with whatever else the machine runs. Here one
process builds ``ProxyApp`` as ``cacheproxy serve`` does (default settings: the access log on, written to
``/dev/null``), runs its lifespan, and calls it directly with the scope uvicorn makes for wrk's ``GET <path>``,
``--clients`` requests in flight, through the real upstream client to the nginx origin of ``peers`` on the other core
(``/pass`` no-store, ``/stale`` revalidated by a 304 every time, ``/cached`` a hit). It reports the process CPU time
per request (``time.process_time``): the minimum and the median of ``--reps`` repetitions of ``--requests`` each.
The upstream client's system calls are in it, uvicorn's are not.

``--baseline DIR`` measures the proxy of another source tree too (a checkout of main, say), in turns with this one's,
each in a fresh process: compare two versions in one run, never across runs.

    python -m load_tests.app_cpu --baseline ../main
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PATHS = ("/pass", "/stale", "/cached")


def scope_for(path: str) -> dict[str, Any]:
    """The ASGI scope uvicorn makes for wrk's ``GET path`` (one ``Host`` field, HTTP/1.1, loopback)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080")],
        "extensions": {},
    }


async def _one(app: Any, path: str) -> int:
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope_for(path), receive, send)
    return status[0]


async def _client(app: Any, path: str, count: int) -> None:
    for _ in range(count):
        status = await _one(app, path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")


async def _measure(origin: str, paths: Sequence[str], requests: int, clients: int, reps: int) -> dict[str, list[float]]:
    from proxy.app import ProxyApp  # the tree on PYTHONPATH: this one, or the baseline's
    from proxy.config import Settings

    app = ProxyApp(Settings(upstream=origin, access_log=True, access_log_file=os.devnull))
    each = max(1, requests // clients)
    out: dict[str, list[float]] = {}
    async with app._lifespan(app):
        for path in paths:
            await asyncio.gather(*(_client(app, path, 50) for _ in range(clients)))  # warm: stored, pooled
            figures = []
            for _ in range(reps):
                started = time.process_time()
                await asyncio.gather(*(_client(app, path, each) for _ in range(clients)))
                figures.append((time.process_time() - started) / (each * clients) * 1e6)
            out[path] = figures
    return out


def child(args: argparse.Namespace) -> int:
    """One measurement in this process; prints its figures as one JSON line."""
    import uvloop

    figures = uvloop.run(_measure(args.origin, args.paths, args.requests, args.clients, args.reps))
    print(json.dumps(figures))
    return 0


def run_tree(tree: Path, origin: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """``child`` in a fresh process pinned to the server core, with ``tree`` first on the path."""
    from load_tests.common import SERVER_CPU, pinned

    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--origin", origin, "--paths", *args.paths,
               "--requests", str(args.requests), "--clients", str(args.clients), "--reps", str(args.reps)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEPROXY_")}
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run(
        pinned(None if args.no_pin else SERVER_CPU, command),
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the measurement of {tree} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), help="paths of the origin to ask for")
    parser.add_argument("--requests", type=int, default=3000, help="requests per repetition (default 3000)")
    parser.add_argument("--clients", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per path; min and median shown (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of every tree (default 2)")
    parser.add_argument("--baseline", metavar="DIR", help="also measure the proxy of another source tree")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if min(args.requests, args.clients, args.reps, args.rounds) < 1:
        raise SystemExit("--requests, --clients, --reps and --rounds must be positive")
    from load_tests.common import HOST, LOAD_CPU, REPO, Processes, free_port
    from load_tests.origin_app import BODY
    from load_tests.peers import FILES, origin_conf, start_nginx

    trees = {"this tree": REPO}
    if args.baseline is not None:
        baseline = Path(args.baseline).resolve()
        if not (baseline / "proxy" / "__main__.py").is_file():
            raise SystemExit(f"--baseline: {baseline} is not a cacheproxy source tree")
        trees["baseline"] = baseline
    runs: dict[str, dict[str, list[float]]] = {name: {path: [] for path in args.paths} for name in trees}
    with Processes() as procs, tempfile.TemporaryDirectory(prefix="app-cpu-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        (workdir / "files").mkdir()
        for name in FILES:
            (workdir / "files" / name).write_bytes(BODY)
        port = free_port()
        start_nginx(procs, "origin", origin_conf(workdir, port), workdir, None if args.no_pin else LOAD_CPU,
                    f"http://{HOST}:{port}/pass")  # fmt: skip
        for _round in range(args.rounds):
            for name, tree in trees.items():
                for path, figures in run_tree(tree, f"http://{HOST}:{port}", args).items():
                    runs[name][path] += figures
    print(f"CPU microseconds per request of the app alone, {args.clients} in flight, {args.rounds} x {args.reps} reps")
    print(f"| tree | {' | '.join(f'{path} min | {path} median' for path in args.paths)} |")
    for name, paths in runs.items():
        cells = " | ".join(f"{min(v):.1f} | {statistics.median(v):.1f}" for v in paths.values())
        print(f"| {name} | {cells} |")
    if args.baseline is not None:
        ratios = ", ".join(
            f"{path} {min(runs['baseline'][path]) / min(runs['this tree'][path]):.2f}" for path in args.paths
        )
        print(f"baseline / this tree, by the minimum: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

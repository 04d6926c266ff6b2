"""cacheproxy beside its peers (issue 11 §5): the bare ASGI app, nginx ``proxy_cache`` / ``proxy_pass`` and Varnish.

One run starts everything on 127.0.0.1 and measures, with wrk (``-t1 -c64 --latency``, 1 KiB bodies):

- ``bare``: the raw-ASGI app under uvicorn that answers every request with the bytes of a hit (``bare_app.py``);
- cacheproxy with its default settings (access log on, written to its stderr) and with ``--no-access-log``:
  hits on ``/cached``, pass-through on ``/pass`` (``no-store``), revalidation on ``/stale`` (``max-age=0`` with an
  ETag: every request revalidates and the origin answers ``304``);
- nginx: ``proxy_cache`` hits on ``/cached``, revalidation on ``/stale`` (``proxy_cache_revalidate on``),
  ``proxy_pass`` on ``/pass`` (no cache), with its access log on as shipped;
- Varnish: hits on ``/cached``, ``return(pass)`` on ``/pass`` (one thread pool, as it has one core);
- with ``--granian``: cacheproxy's hits and pass-through with granian (``--interface asgi``) as the front server.

The origin is nginx serving three static 1 KiB files (it answers conditionals with 304 by itself). Every server under
test is pinned to core 0 with ``taskset``; wrk and the origin share core 1. Rounds are interleaved (every target once,
then again), so drift on a shared machine hits all alike; the table shows medians and two ratios: to the bare app,
and to nginx doing the same kind of work. The script installs nothing: it says what is missing (apt packages
``nginx``, ``varnish``, ``wrk``) and leaves out the rows it cannot run.

    python -m load_tests.peers --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from load_tests.common import (
    HOST,
    LOAD_CPU,
    REPO,
    SERVER_CPU,
    Processes,
    WrkResult,
    WrkSettings,
    free_port,
    http_get,
    median_result,
    raise_fd_limit,
    run_wrk,
    settings_from,
    start_bare,
    write_result,
    wrk_arguments,
)
from load_tests.origin_app import BODY

FILES = {"cached": "max-age=3600", "pass": "no-store", "stale": "max-age=0"}
GOALS = (("hit", 0.9, "bare"), ("pass", 0.25, "bare"), ("revalidate", 0.8, "pass"))


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    kind: str  # bare, hit, pass, revalidate
    server: str  # bare, cacheproxy, nginx, varnish
    pid: int = 0  # the server's process (its children, nginx's or Varnish's workers, are counted with it)


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its descendants, every thread (Linux ``/proc``; 0 elsewhere)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def measure(
    targets: Sequence[Target], settings: WrkSettings, rounds: int
) -> tuple[dict[str, list[WrkResult]], dict[str, list[float]]]:
    """Interleaved rounds (every target once, then again); per run, wrk's report and the server's CPU microseconds
    per request: on a shared machine the steadier figure, since requests/s also depends on what else runs."""
    runs: dict[str, list[WrkResult]] = {t.name: [] for t in targets}
    cpu: dict[str, list[float]] = {t.name: [] for t in targets}
    for _round in range(rounds):
        for target in targets:
            before = tree_cpu(target.pid)
            result = run_wrk(target.name, target.url, settings)
            runs[target.name].append(result)
            cpu[target.name].append((tree_cpu(target.pid) - before) / max(1, result.requests) * 1e6)
    return runs, cpu


def missing_tools(*, varnish: bool, granian: bool) -> list[str]:
    """The programs this run needs that are not installed, each with how to get it."""
    wanted = {"wrk": "apt-get install wrk", "nginx": "apt-get install nginx", "taskset": "apt-get install util-linux"}
    if varnish:
        wanted["varnishd"] = "apt-get install varnish"
    if granian:
        wanted["granian"] = "pip install granian"
    return [f"{tool} ({how})" for tool, how in wanted.items() if shutil.which(tool) is None]


def _nginx_head(prefix: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would otherwise drop to nobody
    return (
        f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
    )


def origin_conf(prefix: Path, port: int) -> str:
    """nginx as the origin: the three files, each with its Cache-Control; ETag and 304s are nginx's own."""
    locations = "".join(
        f'    location = /{name} {{ add_header Cache-Control "{cc}"; default_type application/json; }}\n'
        for name, cc in FILES.items()
    )
    return _nginx_head(prefix) + (
        f"http {{\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 75s;\n"
        f"  server {{\n    listen {HOST}:{port};\n    root {prefix}/files;\n{locations}  }}\n}}\n"
    )


def nginx_conf(prefix: Path, port: int, origin_port: int) -> str:
    """nginx as a peer: proxy_cache for ``/cached`` and ``/stale`` (revalidating), plain proxy_pass for ``/pass``."""
    upstream = 'proxy_pass http://origin;\n      proxy_http_version 1.1;\n      proxy_set_header Connection "";\n'
    return _nginx_head(prefix) + (
        "http {\n"
        f"  access_log {prefix}/access.log;\n"
        f"  proxy_cache_path {prefix}/cache levels=1:2 keys_zone=peers:10m max_size=100m use_temp_path=off;\n"
        f"  upstream origin {{ server {HOST}:{origin_port}; keepalive 128; keepalive_requests 1000000; }}\n"
        f"  server {{\n    listen {HOST}:{port};\n    keepalive_requests 1000000;\n"
        f"    location = /pass {{\n      {upstream}    }}\n"
        f"    location / {{\n      {upstream}      proxy_cache peers;\n      proxy_cache_revalidate on;\n"
        "      add_header X-Cache-Status $upstream_cache_status;\n    }\n  }\n}\n"
    )


def varnish_vcl(origin_port: int) -> str:
    return (
        "vcl 4.1;\n"
        f'backend origin {{ .host = "{HOST}"; .port = "{origin_port}"; }}\n'
        'sub vcl_recv { if (req.url ~ "^/pass") { return (pass); } }\n'
    )


def start_nginx(procs: Processes, name: str, conf: str, prefix: Path, cpu: int | None, ready: str) -> None:
    (prefix / "conf.nginx").write_text(conf)
    args = ["nginx", "-p", str(prefix), "-c", str(prefix / "conf.nginx"), "-g", "daemon off;"]
    procs.start(name, args, cpu=cpu, ready_url=ready)


def start_varnish(procs: Processes, workdir: Path, origin_port: int, cpu: int | None) -> str:
    port = free_port()
    (workdir / "peers.vcl").write_text(varnish_vcl(origin_port))
    # One thread pool for its one core: pinned, the default two made it 2.5 times slower.
    args = ["varnishd", "-F", "-j", "none", "-a", f"{HOST}:{port}", "-f", str(workdir / "peers.vcl"),
            "-n", str(workdir / "varnish"), "-s", "malloc,64m", "-p", "thread_pools=1"]  # fmt: skip
    procs.start("varnish", args, cpu=cpu, ready_url=f"http://{HOST}:{port}/cached")
    return f"http://{HOST}:{port}"


def start_cacheproxy(
    procs: Processes,
    name: str,
    upstream: str,
    cpu: int | None,
    *,
    access_log: bool,
    granian: bool = False,
    root: Path = REPO,
) -> str:
    """The proxy as users run it (``python -m proxy serve``), or the same app under granian; ``root``: the source
    tree to run it from (``--baseline``: another checkout, to compare two versions in one run)."""
    port = free_port()
    if granian:
        env = ["env", f"CACHEPROXY_UPSTREAM={upstream}", f"CACHEPROXY_ACCESS_LOG={int(access_log)}"]
        args = [*env, "granian", "--interface", "asgi", "--loop", "uvloop", "--host", HOST, "--port", str(port),
                "--factory", "proxy.server:create_app_from_env"]  # fmt: skip
    else:
        args = [sys.executable, "-m", "proxy", "serve", "--upstream", upstream, "--host", HOST, "--port", str(port)]
        args += [] if access_log else ["--no-access-log"]
    procs.start(name, args, cpu=cpu, ready_url=f"http://{HOST}:{port}/_cacheproxy/healthz", root=root)
    return f"http://{HOST}:{port}"


def warm(target: Target) -> None:
    """Store the cached targets, and check that the cache answers hits (else the run would measure misses)."""
    for _ in range(3):
        _status, headers, _body = http_get(target.url)
    if target.kind != "hit":
        return
    seen = headers.get("cache-status") or headers.get("x-cache-status") or headers.get("x-varnish", "")
    if not ("hit" in seen.lower() or len(seen.split()) == 2):
        raise RuntimeError(f"{target.name} does not answer {target.url} from its cache: {seen!r}")


KINDS = ("hit", "pass", "revalidate")
SERVERS = ("proxy", "quiet", "nginx", "varnish", "granian", "baseline")
ALIASES = {"reval": "revalidate", "cacheproxy": "proxy", "bare": ""}


def parse_only(text: str | None) -> tuple[set[str], set[str]]:
    """``--only``: the kinds and the servers to measure (an empty set: all of them). The bare app always runs."""
    kinds: set[str] = set()
    servers: set[str] = set()
    for token in filter(None, (t.strip().lower() for t in (text or "").split(","))):
        name = ALIASES.get(token, token)
        if name in KINDS:
            kinds.add(name)
        elif name in SERVERS:
            servers.add(name)
        elif name:
            raise SystemExit(f"--only: unknown {token!r}; kinds {', '.join(KINDS)}, servers {', '.join(SERVERS)}")
    return kinds, servers


def selected(kind: str, server: str, only: tuple[set[str], set[str]]) -> bool:
    """Whether a row is measured. The baseline's rows go with this tree's default ones unless named themselves."""
    kinds, servers = only
    if server == "baseline" and "baseline" not in servers:
        server = "proxy"
    return kind == "bare" or ((not kinds or kind in kinds) and (not servers or server in servers))


ROWS = (
    ("cacheproxy hit, default (access log on)", "/cached", "hit", "proxy"),
    ("cacheproxy hit, --no-access-log", "/cached", "hit", "quiet"),
    ("nginx proxy_cache hit", "/cached", "hit", "nginx"),
    ("Varnish hit", "/cached", "hit", "varnish"),
    ("cacheproxy pass-through (no-store), default", "/pass", "pass", "proxy"),
    ("cacheproxy pass-through, --no-access-log", "/pass", "pass", "quiet"),
    ("nginx proxy_pass", "/pass", "pass", "nginx"),
    ("Varnish return(pass)", "/pass", "pass", "varnish"),
    ("cacheproxy revalidation (stale, origin 304), default", "/stale", "revalidate", "proxy"),
    ("nginx proxy_cache_revalidate (origin 304)", "/stale", "revalidate", "nginx"),
    ("cacheproxy hit under granian, default", "/cached", "hit", "granian"),
    ("cacheproxy pass-through under granian, default", "/pass", "pass", "granian"),
    ("baseline hit, default", "/cached", "hit", "baseline"),
    ("baseline pass-through, default", "/pass", "pass", "baseline"),
    ("baseline revalidation, default", "/stale", "revalidate", "baseline"),
)
KIND_OF_SERVER = {"bare": "bare", "proxy": "cacheproxy", "quiet": "cacheproxy", "granian": "cacheproxy",
                  "baseline": "baseline"}  # fmt: skip


def wanted_servers(args: argparse.Namespace) -> list[str]:
    """The servers the selected rows need, in the order of ``ROWS``."""
    only = parse_only(args.only)
    present = {"granian": args.granian, "baseline": args.baseline is not None}
    present["varnish"] = shutil.which("varnishd") is not None
    wanted: list[str] = []
    for _name, _path, kind, server in ROWS:
        if present.get(server, True) and selected(kind, server, only) and server not in wanted:
            wanted.append(server)
    return wanted


def start_all(procs: Processes, workdir: Path, args: argparse.Namespace) -> list[Target]:
    server, load = (None, None) if args.no_pin else (SERVER_CPU, LOAD_CPU)
    origin_dir = workdir / "origin"
    (origin_dir / "files").mkdir(parents=True)
    for name in FILES:
        (origin_dir / "files" / name).write_bytes(BODY)
    origin_port = free_port()
    start_nginx(
        procs, "origin", origin_conf(origin_dir, origin_port), origin_dir, load, f"http://{HOST}:{origin_port}/pass"
    )
    origin = f"http://{HOST}:{origin_port}"
    urls: dict[str, str] = {}
    pids: dict[str, int] = {}

    def started(name: str, url: str) -> None:
        pids[name] = procs.started[-1][1].pid  # taskset and env exec the server: the same PID
        urls[name] = url

    started("bare", start_bare(procs, server))
    for name in wanted_servers(args):
        if name in ("proxy", "quiet", "granian", "baseline"):
            root = Path(args.baseline).resolve() if name == "baseline" else REPO
            url = start_cacheproxy(procs, f"cacheproxy-{name}", origin, server, access_log=name != "quiet",
                                   granian=name == "granian", root=root)  # fmt: skip
            started(name, url)
        elif name == "nginx":
            nginx_dir = workdir / "nginx"
            nginx_dir.mkdir()
            port = free_port()
            start_nginx(procs, "nginx", nginx_conf(nginx_dir, port, origin_port), nginx_dir, server,
                        f"http://{HOST}:{port}/pass")  # fmt: skip
            started("nginx", f"http://{HOST}:{port}")
        elif name == "varnish":
            started("varnish", start_varnish(procs, workdir, origin_port, server))
    only = parse_only(args.only)
    targets = [Target("bare uvicorn app", urls["bare"] + "/", "bare", "bare", pids["bare"])]
    for name, path, kind, server_name in ROWS:
        if server_name in urls and selected(kind, server_name, only):
            kind_of_server = KIND_OF_SERVER.get(server_name, server_name)
            targets.append(Target(name, urls[server_name] + path, kind, kind_of_server, pids[server_name]))
    return targets


def table(targets: Sequence[Target], medians: dict[str, WrkResult], cpu: dict[str, float] | None = None) -> list[str]:
    """The issue's table: req/s, x bare, x nginx of the same kind, p99 and p99 x bare; with ``cpu`` (median
    microseconds per request) also the CPU per request and bare's CPU per request divided by it."""
    bare = medians[targets[0].name]
    nginx = {t.kind: medians[t.name] for t in targets if t.server == "nginx"}
    width = max(len(t.name) for t in targets)
    extra = " CPU us/req | x bare by CPU |" if cpu else ""
    lines = [f"| {'target':<{width}} | req/s | x bare uvicorn | x nginx (same kind) | p99 ms | p99 x bare | errors |"
             + extra, f"|{'-' * (width + 2)}|------:|------:|------:|------:|------:|------:|"
             + ("------:|------:|" if cpu else "")]  # fmt: skip
    for target in targets:
        result = medians[target.name]
        peer = nginx.get(target.kind)
        versus = f"{result.rps / peer.rps:.2f}" if peer is not None and target.server != "bare" else ""
        line = (
            f"| {target.name:<{width}} | {result.rps:,.0f} | {result.rps / bare.rps:.2f} | {versus} | "
            f"{result.p99_ms:.2f} | {result.p99_ms / bare.p99_ms:.2f} | {result.non_2xx + result.socket_errors} |"
        )
        if cpu:
            used = cpu[target.name]
            line += f" {used:.0f} | {cpu[targets[0].name] / used:.2f} |" if used > 0 else " - | - |"
        lines.append(line)
    return lines


def goals(targets: Sequence[Target], medians: dict[str, WrkResult], cpu: dict[str, float] | None = None) -> list[str]:
    """Issue 11's goals for cacheproxy with its default settings (the first row of each kind)."""
    first = {}
    for target in targets:
        if target.server in ("bare", "cacheproxy") and target.kind not in first:
            first[target.kind] = medians[target.name]
    lines = []
    for kind, wanted, base in GOALS:
        if kind in first and base in first:
            value = first[kind].rps / first[base].rps
            verdict = "meets" if value >= wanted else "BELOW"
            lines.append(f"{kind}/{base} {value:.2f}   goal >= {wanted}: {verdict}")
    if cpu:
        names: dict[str, str] = {}
        for target in targets:
            if target.server in ("bare", "cacheproxy"):
                names.setdefault(target.kind, target.name)
        for kind, wanted, base in GOALS:
            if kind in names and base in names and cpu[names[kind]] > 0:
                value = cpu[names[base]] / cpu[names[kind]]
                verdict = "meets" if value >= wanted else "BELOW"
                lines.append(f"{kind}/{base} by CPU per request {value:.2f}   goal >= {wanted}: {verdict}")
    for kind, limit in (("hit", 1.5), ("pass", 3.0)):
        if kind in first:
            value = first[kind].p99_ms / first["bare"].p99_ms
            verdict = "meets" if value <= limit else "ABOVE"
            lines.append(f"{kind} p99/bare p99 {value:.2f}   goal <= {limit}: {verdict}")
    return lines


def per_round(targets: Sequence[Target], runs: dict[str, list[WrkResult]], cpu: dict[str, list[float]]) -> list[str]:
    """Ratios taken round by round (each pair measured minutes apart at most): every cacheproxy row to the bare app,
    and with ``--baseline`` this tree's default rows to the baseline's of the same kind, by req/s and by CPU."""
    bare = targets[0].name
    lines = []
    for target in targets[1:]:
        if target.server in ("cacheproxy", "baseline"):
            paired = [r.rps / b.rps for b, r in zip(runs[bare], runs[target.name], strict=True)]
            lines.append(f"{target.name} x bare per round: {', '.join(f'{p:.2f}' for p in paired)} "
                         f"(median {statistics.median(paired):.2f})")  # fmt: skip
    ours = {t.kind: t.name for t in reversed(targets) if t.server == "cacheproxy"}
    for base in (t for t in targets if t.server == "baseline"):
        mine = ours.get(base.kind)
        if mine is None:
            continue
        rps = [m.rps / b.rps for b, m in zip(runs[base.name], runs[mine], strict=True)]
        used = [b / m for b, m in zip(cpu[base.name], cpu[mine], strict=True) if m > 0]
        lines.append(f"{base.kind}: this tree / baseline per round, req/s {', '.join(f'{r:.2f}' for r in rps)} "
                     f"(median {statistics.median(rps):.2f}); baseline CPU per request / ours "
                     f"{', '.join(f'{u:.2f}' for u in used)}")  # fmt: skip
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    wrk_arguments(parser)
    parser.set_defaults(duration=5.0, rounds=3)
    parser.add_argument("--granian", action="store_true", help="also run cacheproxy under granian")
    parser.add_argument("--only", help="comma-separated kinds (hit, pass, revalidate) and/or servers (proxy, quiet, "
                        "nginx, varnish, granian, baseline) to measure; the bare app always runs")  # fmt: skip
    parser.add_argument("--baseline", metavar="DIR", help="also run the cacheproxy of another source tree (a "
                        "checkout of main, say), default settings, to compare two versions in one run")  # fmt: skip
    args = parser.parse_args(argv)
    settings = settings_from(args)
    parse_only(args.only)  # an unknown name stops here, before anything starts
    if args.baseline is not None and not (Path(args.baseline) / "proxy" / "__main__.py").is_file():
        raise SystemExit(f"--baseline: {args.baseline} is not a cacheproxy source tree")
    only = parse_only(args.only)
    missing = missing_tools(varnish=any(selected(k, "varnish", only) for k in KINDS), granian=args.granian)
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        if any(m.startswith(("wrk", "nginx", "granian")) for m in missing):
            return 2  # Varnish alone may be missing: its rows are left out
    raise_fd_limit()
    with Processes() as procs, tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        targets = start_all(procs, workdir, args)
        for target in targets:
            warm(target)
        if args.warmup > 0:
            measure(targets, replace(settings, duration=args.warmup), 1)
        runs, cpu_runs = measure(targets, settings, args.rounds)
    medians = {name: median_result(name, results) for name, results in runs.items()}
    cpu = {name: statistics.median(values) for name, values in cpu_runs.items()}
    print(f"wrk -t1 -c{settings.connections}, {settings.duration:g} s x {args.rounds} interleaved round(s), 1 KiB "
          f"bodies, servers on core {SERVER_CPU}, wrk + nginx origin on core {LOAD_CPU}; medians")  # fmt: skip
    print("\n".join(table(targets, medians, cpu)))
    print("\n".join(goals(targets, medians, cpu)))
    spread = {name: (min(r.rps for r in rs), max(r.rps for r in rs)) for name, rs in runs.items()}
    print("\n".join(per_round(targets, runs, cpu_runs)))
    payload = {"settings": settings, "rounds": args.rounds, "runs": runs, "medians": medians, "spread": spread,
               "cpu_us_per_request": cpu_runs}  # fmt: skip
    print(f"written: {write_result('peers', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

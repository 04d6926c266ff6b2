"""The ``cacheproxy`` command: serve, demo, check, explain, schema, purge.

Every ``serve`` flag also reads ``CACHEPROXY_<FLAG>`` from the environment; a flag on the command line wins.
A new flag follows one pattern, and its ``--help`` then names its default and its variable (a test holds every flag
to it)::

    p.add_argument("--name", type=value_of(parse), default=_env("name", "builtin"), help="what it does")
    p.add_argument("--switch", action=EnvFlag, default=_env("switch", "0"), help="what it turns on")

``parse`` takes the text and raises ``ValueError`` saying the expected form; a bad variable is then one line naming
it, exit 2, and only for the command that reads it (``--help`` never converts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from proxy.config import (
    Settings,
    parse_admin_hosts,
    parse_bool,
    parse_count,
    parse_port,
    parse_seconds,
    parse_size,
    parse_trusted_proxies,
)
from proxy.errors import ConfigError, RulesError
from proxy.trust import DEFAULT_TRUSTED

T = TypeVar("T")


class EnvDefault(str):
    """A flag's default as text: the ``CACHEPROXY_<FLAG>`` variable's value when set, else the built-in default.

    argparse converts a text default with the flag's ``type`` only when the flag is absent from the command line
    (and never for ``--help``), so a bad variable breaks only the command that reads it, and its converter
    can name the variable it came from (``EnvParser.error`` prints that as one line).
    """

    variable: str
    builtin: str | None
    from_env: bool

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return str, (str(self),)

    def __new__(cls, variable: str, builtin: str | None) -> EnvDefault:
        raw = os.environ.get(variable)
        self = super().__new__(cls, raw if raw is not None else builtin or "")
        self.variable, self.builtin, self.from_env = variable, builtin, raw is not None
        return self


def _env(name: str, default: str | None = None) -> EnvDefault:
    """The default of flag ``--name``: ``CACHEPROXY_NAME`` when set, else ``default`` (``None``: no value)."""
    return EnvDefault(f"CACHEPROXY_{name.upper()}", default)


def value_of(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` from a parser raising ``ValueError``; a bad variable's message names the variable."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except (ValueError, ConfigError) as error:
            where = f"{text.variable}={str(text)!r}: " if isinstance(text, EnvDefault) and text.from_env else ""
            raise argparse.ArgumentTypeError(f"{where}{error}") from None

    convert.__name__ = parse.__name__
    return convert


class EnvFlag(argparse.Action):
    """A boolean flag (``--preserve-host``) whose variable reads 1/true/yes/on or 0/false/no/off."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("type", value_of(parse_bool))
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, *_: object) -> None:
        setattr(ns, self.dest, True)


class EnvParser(argparse.ArgumentParser):
    """``--help`` gives every option's default and variable; a bad variable is one line, exit 2."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        default = action.default
        if isinstance(default, EnvDefault):
            if not default.from_env and default.builtin is None:
                action.default = None
            if action.type is None:
                action.type = str  # the value becomes a plain str (worker processes get the settings pickled)
            shown = "off" if isinstance(action, EnvFlag) else default.builtin or "none"
            action.help = f"{action.help or ''} [default: {shown}; env {default.variable}]".lstrip()
        return action

    def error(self, message: str) -> NoReturn:
        if "CACHEPROXY_" in message:
            self.exit(2, f"{self.prog}: {message}\n")
        super().error(message)


def _add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upstream", default=_env("upstream"), help="the origin, e.g. http://127.0.0.1:9000")
    p.add_argument("--rules", default=_env("rules"), help="rules.yaml; without it HTTP headers alone decide")
    p.add_argument("--host", default=_env("host", "127.0.0.1"), help="the address to listen on")
    p.add_argument("--port", type=value_of(parse_port), default=_env("port", "8080"), help="the port to listen on")
    p.add_argument(
        "--store", default=_env("store", "memory"), help="memory, redis://host:port/db, redis+cluster://h:p,h:p"
    )
    size = value_of(parse_size)
    p.add_argument("--memory-budget", type=size, default=_env("memory_budget", "256MiB"), help="memory store size")
    p.add_argument(
        "--mmap-threshold",
        type=size,
        default=_env("mmap_threshold", "128KiB"),
        help="glibc: allocations this large or larger get their own mapping, returned to the system when freed "
        "(bodies evicted from the cache leave no resident holes); 0 keeps glibc's moving threshold",
    )
    p.add_argument(
        "--l1-budget",
        type=size,
        default=_env("l1_budget", "0"),
        help="per-worker memory L1 in front of Redis, e.g. 32MiB; 0 means no L1",
    )
    p.add_argument("--workers", type=value_of(parse_count), default=_env("workers", "1"), help="worker processes")
    p.add_argument("--preserve-host", action=EnvFlag, default=_env("preserve_host", "0"), help="send the client's Host")
    p.add_argument(
        "--connect-timeout", type=value_of(parse_seconds), default=_env("connect_timeout", "5"), help="seconds"
    )
    p.add_argument("--read-timeout", type=value_of(parse_seconds), default=_env("read_timeout", "30"), help="seconds")
    p.add_argument(
        "--upstream-ca", default=_env("upstream_ca"), help="PEM CA certificates to verify an https:// upstream with"
    )
    p.add_argument("--admin-prefix", default=_env("admin_prefix", "/_cacheproxy"), help="path of the admin surface")
    p.add_argument(
        "--allow-purge-method", action=EnvFlag, default=_env("allow_purge_method", "0"), help="accept PURGE /path"
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=_env("log_format", "text"),
        help="log lines for people or JSON",
    )
    p.add_argument(
        "--no-access-log", action=EnvFlag, default=_env("no_access_log", "0"), help="do not log one line per request"
    )
    p.add_argument(
        "--access-log-file",
        default=_env("access_log_file"),
        help="where access lines go: - for stdout, or a file (appended to); without it, stderr with the other logs",
    )
    _add_eviction_flag(p)
    _add_limit_flags(p)
    _add_trust_flags(p)


def _add_eviction_flag(p: argparse.ArgumentParser) -> None:
    from proxy.storage.eviction import DEFAULT_POLICY, POLICIES

    p.add_argument(
        "--eviction",
        choices=tuple(POLICIES),
        default=_env("eviction", DEFAULT_POLICY),
        help="eviction policy of the memory store and the L1",
    )


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    """Per-connection limits (answered 414, 431, 408 or refused) and the upstream pool (503 past its wait)."""
    size, count, seconds = value_of(parse_size), value_of(parse_count), value_of(parse_seconds)
    p.add_argument("--max-url-bytes", type=size, default=_env("max_url_bytes", "8KiB"), help="request target: 414")
    p.add_argument("--max-header-bytes", type=size, default=_env("max_header_bytes", "64KiB"), help="fields: 431")
    p.add_argument("--max-headers", type=count, default=_env("max_headers", "100"), help="field lines: 431")
    p.add_argument("--head-timeout", type=seconds, default=_env("head_timeout", "10"), help="seconds for a head: 408")
    p.add_argument(
        "--keepalive-timeout", type=seconds, default=_env("keepalive_timeout", "5"), help="idle seconds, then close"
    )
    p.add_argument(
        "--max-connections", type=count, default=_env("max_connections", "4096"), help="open connections per worker"
    )
    p.add_argument(
        "--upstream-pool-size", type=count, default=_env("upstream_pool_size", "256"), help="upstream connections"
    )
    p.add_argument(
        "--upstream-pool-timeout",
        type=seconds,
        default=_env("upstream_pool_timeout", "1"),
        help="seconds to wait for a pooled upstream connection before answering 503",
    )


def _add_trust_flags(p: argparse.ArgumentParser) -> None:
    """Whom the proxy believes (``proxy.trust``) and which Host names the admin pages answer (``proxy.admin.auth``)."""
    p.add_argument(
        "--trusted-proxies",
        type=value_of(parse_trusted_proxies),
        default=_env("trusted_proxies", DEFAULT_TRUSTED),
        help="peers whose X-Forwarded-For/-Proto and Forwarded are believed, and who counts as local for the admin "
        "surface: addresses or CIDRs, comma-separated, or none",
    )
    p.add_argument(
        "--admin-hosts",
        type=value_of(parse_admin_hosts),
        default=_env("admin_hosts", ""),
        help="Host names the admin pages answer besides localhost, 127.0.0.1 and ::1, comma-separated "
        "(against DNS rebinding)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not args.upstream:
        raise ConfigError("no upstream: pass --upstream URL or set CACHEPROXY_UPSTREAM")
    return Settings(
        upstream=args.upstream,
        rules=Path(args.rules) if args.rules else None,
        host=args.host,
        port=args.port,
        store=args.store,
        memory_budget=args.memory_budget,
        mmap_threshold=args.mmap_threshold,
        l1_budget=args.l1_budget,
        workers=args.workers,
        preserve_host=args.preserve_host,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        upstream_ca=args.upstream_ca or None,
        admin_prefix=args.admin_prefix,
        admin_token=os.environ.get("CACHEPROXY_ADMIN_TOKEN") or None,
        allow_purge_method=args.allow_purge_method,
        log_format=args.log_format,
        access_log=not args.no_access_log,
        access_log_file=args.access_log_file or None,
        eviction=args.eviction,
        max_url_bytes=args.max_url_bytes,
        max_header_bytes=args.max_header_bytes,
        max_headers=args.max_headers,
        head_timeout=args.head_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_connections=args.max_connections,
        upstream_pool_size=args.upstream_pool_size,
        upstream_pool_timeout=args.upstream_pool_timeout,
        trusted_proxies=args.trusted_proxies,
        admin_hosts=args.admin_hosts,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.server import serve

    settings = settings_from_args(args)
    if settings.rules is not None:
        from proxy.rules.loader import load_rules

        # refuse to start on an invalid file, with the same messages as check
        load_rules(settings.rules, stores=settings.store_names)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shut down cleanly, then re-raised Ctrl-C's SIGINT
        serve(settings)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(port=args.port, origin_port=args.origin_port)


def cmd_check(args: argparse.Namespace) -> int:
    from proxy.config import store_names
    from proxy.rules.loader import check_file

    problems = check_file(args.file, stores=store_names(args.store) if args.store else None)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: ok")
    return 0


def _pairs(values: Sequence[str] | None, flag: str) -> list[tuple[str, str]]:
    out = []
    for value in values or ():
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"{flag} takes 'Name: value', got {value!r}")
        out.append((name.strip(), rest.strip()))
    return out


def cmd_explain(args: argparse.Namespace) -> int:
    from proxy.explain import explain
    from proxy.rules.loader import load_rules
    from proxy.rules.model import Rules

    rules = load_rules(args.rules) if args.rules else Rules.builtin()
    response = _pairs(args.response_header, "--response-header") if args.response_header else None
    print(explain(rules, args.method.upper(), args.url, _pairs(args.header, "-H"), response, args.status))
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    from proxy.explain import schema

    print(json.dumps(schema(), indent=2))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    import httpx

    body = {"url": args.url} if args.url else {"prefix": args.prefix} if args.prefix else {"tag": args.tag}
    headers = {}
    token = os.environ.get("CACHEPROXY_ADMIN_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    endpoint = args.proxy.rstrip("/") + args.admin_prefix + "/purge"
    try:
        response = httpx.post(endpoint, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        print(f"purge failed: {endpoint}: {error}", file=sys.stderr)
        return 2
    if response.status_code != 200:
        print(f"purge failed: {response.status_code} {response.text.strip()}", file=sys.stderr)
        return 1
    print(json.dumps(response.json()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from proxy.simulate import format_table, plot, simulate
    from proxy.storage.eviction import check_policy

    try:
        policies = [check_policy(name.strip()) for name in args.policy.split(",") if name.strip()]
    except ValueError as error:
        raise ConfigError(f"--policy: {error}") from error
    budgets = [parse_size(text) for text in args.budget.split(",") if text.strip()]
    if not policies or not budgets:
        raise ConfigError("simulate needs at least one --policy and one --budget")
    if not Path(args.trace).is_file():
        raise ConfigError(f"no such trace file: {args.trace}")
    report = simulate(args.trace, policies, budgets, overhead=args.overhead)
    print(format_table(report))
    if args.plot:
        try:
            plot(report, Path(args.plot))
        except ImportError:
            print("cacheproxy simulate: --plot needs matplotlib: pip install 'cacheproxy[plot]'", file=sys.stderr)
            return 1
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    from proxy.warm import run_warm

    return run_warm(args)


def _add_simulate_and_warm(sub: argparse._SubParsersAction[EnvParser]) -> None:
    from proxy.simulate import DEFAULT_BUDGETS, DEFAULT_OVERHEAD
    from proxy.storage.eviction import POLICIES

    sim = sub.add_parser("simulate", help="replay an access log (or CSV trace) through the eviction policies")
    sim.add_argument("trace", metavar="ACCESS_LOG", help="a --log-format json access log, or timestamp,key,size CSV")
    sim.add_argument("--budget", default=DEFAULT_BUDGETS, help=f"comma-separated sizes ({DEFAULT_BUDGETS})")
    sim.add_argument("--policy", default=",".join(POLICIES), help=f"comma-separated ({','.join(POLICIES)})")
    sim.add_argument("--plot", metavar="OUT", help="draw hit ratio against budget to OUT.png or OUT.svg")
    sim.add_argument(
        "--overhead", type=int, default=DEFAULT_OVERHEAD, help="bytes charged per entry beyond its body (512)"
    )
    sim.set_defaults(func=cmd_simulate)

    warm = sub.add_parser("warm", help="request URLs through a running proxy so that its cache is warm")
    warm.add_argument("--proxy", default=_env("proxy", "http://127.0.0.1:8080"), help="the proxy's base URL")
    source = warm.add_mutually_exclusive_group(required=True)
    source.add_argument("urls_file", nargs="?", metavar="URLS_FILE", help="one path or URL per line")
    source.add_argument("--from-log", metavar="ACCESS_LOG", help="the most requested storable targets of a log")
    source.add_argument("--sitemap", metavar="URL", help="the <loc> URLs of a sitemap.xml")
    warm.add_argument("--top", type=int, default=1000, help="with --from-log: how many targets (1000)")
    warm.add_argument("--concurrency", type=int, default=8)
    warm.add_argument("--rate", default="50/s", help="requests per second at most (50/s; 0 for no limit)")
    warm.add_argument("--max-failures", type=float, default=0.1, help="share of errors allowed before exit 1 (0.1)")
    warm.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    warm.set_defaults(func=cmd_warm)


def build_parser() -> argparse.ArgumentParser:
    parser = EnvParser(prog="cacheproxy", description="A caching reverse proxy for HTTP APIs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the proxy in front of an upstream",
        description="Run the proxy in front of an upstream. A flag on the command line wins over its variable.",
        epilog="Boolean variables read 1/true/yes/on or 0/false/no/off. CACHEPROXY_ADMIN_TOKEN (a variable only, "
        "so it stays out of the process list) lets clients that send 'Authorization: Bearer <token>' reach the admin "
        "surface from other hosts than loopback.",
    )
    _add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="run a sample origin behind the proxy and print curl lines to try")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--origin-port", type=int, default=0, help="the sample origin's port (default: any free one)")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check", help="validate a rules file")
    check.add_argument("file")
    check.add_argument(
        "--store",
        default=_env("store"),
        help="serve's --store: then a route's store: must name a store it opens (unchecked without it)",
    )
    check.set_defaults(func=cmd_check)

    explain = sub.add_parser("explain", help="show what the proxy would do with a request, without sending it")
    explain.add_argument("--rules", default=_env("rules"))
    explain.add_argument("method")
    explain.add_argument("url")
    explain.add_argument("-H", "--header", action="append", help="a request header 'Name: value'")
    explain.add_argument("--response-header", action="append", help="a response header 'Name: value'")
    explain.add_argument("--status", type=int, default=200, help="the response status to assume")
    explain.set_defaults(func=cmd_explain)

    schema = sub.add_parser("schema", help="print the JSON Schema of rules.yaml")
    schema.set_defaults(func=cmd_schema)

    purge = sub.add_parser("purge", help="remove entries through a running proxy's admin API")
    what = purge.add_mutually_exclusive_group(required=True)
    what.add_argument("--url")
    what.add_argument("--prefix")
    what.add_argument("--tag")
    purge.add_argument("--proxy", default=_env("proxy", "http://127.0.0.1:8080"), help="the proxy's base URL")
    purge.add_argument("--admin-prefix", default=_env("admin_prefix", "/_cacheproxy"))
    purge.set_defaults(func=cmd_purge)
    _add_simulate_and_warm(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cacheproxy")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RulesError as error:
        for line in error.problems:
            print(line, file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"cacheproxy: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The ``cacheproxy`` command: serve, demo, check, explain, schema, purge.

Every ``serve`` flag also reads ``CACHEPROXY_<FLAG>`` from the environment; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy.config import Settings, parse_size
from proxy.errors import ConfigError, RulesError


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CACHEPROXY_{name.upper()}", default)


def _add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upstream", default=_env("upstream"), help="the origin, e.g. http://127.0.0.1:9000")
    p.add_argument("--rules", default=_env("rules"), help="rules.yaml (default: cache by HTTP headers only)")
    p.add_argument("--host", default=_env("host", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(_env("port", "8080") or 8080))
    p.add_argument(
        "--store", default=_env("store", "memory"), help="memory, redis://host:port/db, redis+cluster://h:p,h:p"
    )
    p.add_argument("--memory-budget", default=_env("memory_budget", "256MiB"), help="memory store size (256MiB)")
    p.add_argument("--l1-budget", default=_env("l1_budget", "0"), help="per-worker memory L1 in front of Redis (32MiB)")
    p.add_argument("--workers", type=int, default=int(_env("workers", "1") or 1))
    p.add_argument("--preserve-host", action="store_true", default=_env("preserve_host", "0") in ("1", "true"))
    p.add_argument("--connect-timeout", type=float, default=float(_env("connect_timeout", "5") or 5))
    p.add_argument("--read-timeout", type=float, default=float(_env("read_timeout", "30") or 30))
    p.add_argument("--admin-prefix", default=_env("admin_prefix", "/_cacheproxy"))
    p.add_argument(
        "--allow-purge-method", action="store_true", default=_env("allow_purge_method", "0") in ("1", "true")
    )
    p.add_argument("--log-format", choices=("text", "json"), default=_env("log_format", "text"))
    p.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    p.add_argument(
        "--trusted-proxies",
        default=_env("trusted_proxies", "127.0.0.1,::1"),
        help="peers whose X-Forwarded-For/-Proto and Forwarded are believed, and who counts as local for the admin "
        "surface: addresses or CIDRs, comma-separated, or none (default 127.0.0.1,::1; CACHEPROXY_TRUSTED_PROXIES)",
    )
    p.add_argument(
        "--admin-hosts",
        default=_env("admin_hosts", ""),
        help="Host names the admin pages answer besides localhost, 127.0.0.1 and ::1, comma-separated "
        "(against DNS rebinding; CACHEPROXY_ADMIN_HOSTS)",
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
        memory_budget=parse_size(args.memory_budget),
        l1_budget=parse_size(args.l1_budget),
        workers=args.workers,
        preserve_host=args.preserve_host,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        admin_prefix=args.admin_prefix,
        admin_token=os.environ.get("CACHEPROXY_ADMIN_TOKEN") or None,
        allow_purge_method=args.allow_purge_method,
        log_format=args.log_format,
        access_log=not args.no_access_log,
        trusted_proxies=args.trusted_proxies,
        admin_hosts=args.admin_hosts,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.server import serve

    settings = settings_from_args(args)
    if settings.rules is not None:
        from proxy.rules.loader import load_rules

        load_rules(settings.rules)  # refuse to start on an invalid file, with the same messages as check
    serve(settings)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(port=args.port, origin_port=args.origin_port)


def cmd_check(args: argparse.Namespace) -> int:
    from proxy.rules.loader import check_file

    problems = check_file(args.file)
    for line in problems:
        print(line)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cacheproxy", description="A caching reverse proxy for HTTP APIs.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy in front of an upstream")
    _add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="run a sample origin behind the proxy and print curl lines to try")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--origin-port", type=int, default=0, help="the sample origin's port (default: any free one)")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check", help="validate a rules file")
    check.add_argument("file")
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
    return parser


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

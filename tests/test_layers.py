"""The layer table of ``DESIGN.md`` holds: each part of ``proxy/`` imports only the parts its row allows, no module
imports another in a loop, and the low layers import no third-party library beyond their row.

Every module under ``proxy/`` is parsed with ``ast``; every import counts, wherever it is (module level, inside a
function, under ``TYPE_CHECKING``): a lazy import is still a dependency. ``python -m tests.test_layers`` prints the
graph of parts (the picture in the README).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "proxy"

# Module (or package) name -> part. The longest matching name wins.
PARTS: dict[str, str] = {
    "proxy": "command",  # the package's own __init__ (a version string)
    "proxy.clock": "base",
    "proxy.errors": "base",
    "proxy.logs": "base",
    "proxy.heap": "base",  # the C library's allocator settings (glibc's mmap threshold)
    "proxy.ratelog": "base",  # rate-limited log lines, for failures that repeat during an outage
    "proxy.messages": "messages",
    "proxy.rfc": "rfc",
    "proxy.rules": "rules",
    "proxy.config": "config",
    "proxy.trust": "config",  # the --trusted-proxies value: who may vouch for forwarding fields
    "proxy.storage": "storage",
    "proxy.origin": "origin",
    "proxy.forwarding": "client",
    "proxy.upstream": "client",
    "proxy.http1": "client",
    "proxy.cache": "cache",
    "proxy.runtime": "runtime",
    "proxy.app": "edge",
    "proxy.endpoint": "edge",
    "proxy.hot": "edge",
    "proxy.admin": "edge",
    "proxy.limits": "edge",  # uvicorn's httptools protocol with the request-head limits (before the app runs)
    "proxy.trailers": "edge",  # the same protocol, request trailers dropped where they are parsed
    "proxy.rawtarget": "edge",  # the same protocol, the raw request target kept for the one parse
    "proxy.edgehit": "edge",  # the same protocol, fresh hits written in place (ProxyApp.answer_now)
    "proxy.head": "edge",  # the one parse of the request head
    "proxy.memo": "memo",
    "proxy.server": "command",
    "proxy.cli": "command",
    "proxy.__main__": "command",
    "proxy.demo": "command",
    "proxy.explain": "command",
    "proxy.simulate": "command",  # replays a trace through the eviction policies (``cacheproxy simulate``)
    "proxy.warm": "command",  # ``cacheproxy warm``: an HTTP client of its own (httpx), never below the edge
    "proxy.tracelog": "command",  # reads access logs for simulate and warm
}

# The allowed arrows, written down once: part -> the parts it may import (itself always).
_BELOW_EDGE = {"base", "messages", "rfc", "rules", "config", "storage", "origin", "client", "cache"}
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "messages": set(),
    "rfc": {"messages"},
    "rules": {"base", "messages", "rfc"},
    "config": {"base", "messages", "rules", "storage"},  # settings check store choices and parse trusted proxies
    "storage": {"base", "messages"},
    "origin": {"base", "messages"},
    "client": {"base", "messages", "rfc", "origin"},
    "cache": {"base", "messages", "rfc", "rules", "storage", "origin"},
    "runtime": _BELOW_EDGE,
    "edge": {*_BELOW_EDGE - {"client"}, "runtime"},
    "memo": {"base", "storage"},
    "command": {*_BELOW_EDGE, "runtime", "edge", "memo"},
}

# Third-party libraries a part may import (the standard library always). Parts not listed are not restricted here;
# ``tests/rfc/test_purity.py`` holds rfc to a stricter rule still.
THIRD_PARTY: dict[str, set[str]] = {
    "base": set(),
    "messages": set(),
    "rules": {"yaml", "pydantic", "pydantic_core"},
    "config": set(),
    "storage": {"redis", "msgpack"},
    "origin": set(),
    "client": {"httptools"},  # llhttp parses the origin's responses; sockets, TLS and the pool are the stdlib's
    "cache": set(),  # never an HTTP client, an ASGI framework or a Redis client: the ports are its only contact
    "runtime": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def part_of(name: str) -> str:
    best = max((prefix for prefix in PARTS if name == prefix or name.startswith(prefix + ".")), key=len)
    return PARTS[best]


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports_of(name: str) -> Iterator[str]:
    """Every name ``name`` imports; ``from proxy.x import y`` counts as ``proxy.x.y`` when that is a module."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, package)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def module_graph() -> dict[str, set[str]]:
    """Module -> the ``proxy`` modules it imports (not itself)."""
    return {
        name: {dep for dep in imports_of(name) if dep in MODULES and dep != name and not name.startswith(dep + ".")}
        for name in MODULES
    }


def part_graph() -> dict[str, set[str]]:
    arrows: dict[str, set[str]] = defaultdict(set)
    for name, deps in module_graph().items():
        for dep in deps:
            if part_of(dep) != part_of(name):
                arrows[part_of(name)].add(part_of(dep))
    return arrows


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layer_table_each_module_imports_only_what_its_row_allows(name: str) -> None:
    part = part_of(name)
    wrong = sorted(
        f"{dep} ({part_of(dep)})"
        for dep in module_graph()[name]
        if part_of(dep) != part and part_of(dep) not in ALLOWED[part]
    )
    assert not wrong, f"{name} ({part}) may import only {sorted(ALLOWED[part])}, imports {wrong}"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if part_of(name) in THIRD_PARTY))
def test_layer_table_low_layers_import_no_other_library(name: str) -> None:
    allowed = THIRD_PARTY[part_of(name)]
    foreign = sorted(
        dep
        for dep in imports_of(name)
        if (top := dep.split(".")[0]) != "proxy" and top not in sys.stdlib_module_names and top not in allowed
    )
    assert not foreign, f"{name} imports {foreign}"


def test_layer_table_no_import_cycles_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_layer_table_no_import_cycles_between_parts() -> None:
    assert cycles(part_graph()) == []


def test_layer_table_every_module_has_a_part() -> None:
    assert all(part_of(name) in ALLOWED for name in MODULES)


def test_layer_table_catches_a_forbidden_arrow() -> None:
    """The checker itself: cache importing the HTTP client would be reported (the rule can fail)."""
    assert "client" not in ALLOWED[part_of("proxy.cache.service")]
    assert part_of("proxy.upstream") == "client"
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


if __name__ == "__main__":
    for source, targets in sorted(part_graph().items()):
        print(f"{source:>9} -> {', '.join(sorted(targets))}")
    for component in cycles(module_graph()):
        print("cycle:", " <-> ".join(component))

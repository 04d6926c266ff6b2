"""House rule 2: ``proxy/rfc`` is pure: stdlib and ``proxy.messages`` only; no clock, I/O or logging."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[2] / "proxy" / "rfc"
MODULES = sorted(SPEC.rglob("*.py"))
# Pure parsing libraries (no I/O, no clock) allowed by name: http-sf for RFC 8941/9651 Structured Fields.
PURE_LIBRARIES = frozenset({"http_sf"})
FORBIDDEN = frozenset({"asyncio", "logging", "time", "socket", "random", "secrets", "threading", "subprocess"})
CLOCK_CALLS = frozenset(
    {
        ("time", "time"),
        ("time", "monotonic"),
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
    }
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SPEC.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: Path) -> str:
    """The package relative imports in ``path`` resolve against."""
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _imports(tree: ast.AST, package: str) -> list[str]:
    """Absolute names imported (relative imports resolved against ``package``)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            else:
                names.append(node.module or "")
    return names


def _is_allowed(name: str) -> bool:
    top = name.split(".")[0]
    if top in FORBIDDEN:
        return False
    if name == "proxy.messages" or name == "proxy.rfc" or name.startswith("proxy.rfc."):
        return True
    if top in PURE_LIBRARIES:
        return True
    return top in sys.stdlib_module_names


def _clock_calls(tree: ast.AST) -> list[str]:
    """Calls such as ``time.time()`` or ``datetime.now()`` (also ``datetime.datetime.now()``)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
            if (owner_name, node.func.attr) in CLOCK_CALLS:
                found.append(f"{owner_name}.{node.func.attr}")
    return found


def violations(source: str, package: str) -> list[str]:
    tree = ast.parse(source)
    bad = [f"import {name}" for name in _imports(tree, package) if not _is_allowed(name)]
    return bad + [f"call {name}" for name in _clock_calls(tree)]


def test_purity_sees_the_rfc_modules() -> None:
    names = {_module_name(p) for p in MODULES}
    assert {"proxy.rfc.directives", "proxy.rfc.age", "proxy.rfc.storable"} <= names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_rule2_rfc_module_is_pure(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), _package(path)) == []


CHECKER = {
    "rule2-third-party-import": ("import yaml", ["import yaml"]),
    "rule2-other-proxy-package": ("from proxy.cache import service", ["import proxy.cache"]),
    "rule2-relative-outside-rfc": ("from ..clock import Clock", ["import proxy.clock"]),
    "rule2-relative-inside-rfc": ("from .age import parse_http_date", []),
    "rule2-time-import": ("import time", ["import time"]),
    "rule2-logging-from-import": ("from logging import getLogger", ["import logging"]),
    "rule2-asyncio-submodule": ("import asyncio.tasks", ["import asyncio.tasks"]),
    "rule2-datetime-now-call": ("from datetime import datetime\nx = datetime.now()", ["call datetime.now"]),
    "rule2-qualified-now-call": ("import datetime\nx = datetime.datetime.now()", ["call datetime.now"]),
    "rule2-time-time-call": ("x = time.time()", ["call time.time"]),
    "rule2-named-pure-library-ok": ("import http_sf", []),
    "rule2-other-sf-library-refused": ("import http_sfv", ["import http_sfv"]),
    "rule2-stdlib-ok": (
        "import re\nfrom email.utils import parsedate_to_datetime\nfrom proxy.messages import Headers",
        [],
    ),
}


@pytest.mark.parametrize(("source", "expected"), CHECKER.values(), ids=CHECKER.keys())
def test_rule2_checker_catches(source: str, expected: list[str]) -> None:
    assert violations(source, "proxy.rfc") == expected

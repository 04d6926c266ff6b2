"""Loading and validating ``rules.yaml``: every problem at once, each as ``file:line:col: field: message``.

The YAML is composed into a node tree first, so every problem can point at the line and column of the field at
fault: pydantic's error locations are walked down that tree. Then the checks a schema cannot express run over
the routes: duplicate names, routes shadowed by an earlier catch-all, caching set on unsafe methods (RFC 9111
§4.4: their responses are never reused), ``path`` and ``regex`` together, caching fields on a bypass route.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from proxy.errors import RulesError
from proxy.messages import UNSAFE_METHODS
from proxy.rfc.policy import Policy
from proxy.rules.match import covers, ignores_case
from proxy.rules.model import (
    DefaultsFields,
    KeyFields,
    KeySpec,
    MatchFields,
    Route,
    RouteFields,
    Rules,
    RulesFile,
    field_names,
)

_CACHING = ("ttl", "override", "stale_while_revalidate", "stale_if_error", "statuses")
_MESSAGES = {
    "missing": "required field is missing",
    "bool_type": "must be true or false",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
}
_EMPTY = "no 'routes:' and no 'defaults:' (an empty or truncated file?); write 'routes: []' to mean no routes"


class Problem(NamedTuple):
    line: int
    col: int
    field: str
    message: str


def load_rules(path: str | Path, *, stores: Collection[str] | None = None) -> Rules:
    """Read, validate and resolve a rules file; ``RulesError`` carries every problem.

    An empty file, or one with neither ``routes:`` nor ``defaults:``, is a problem (a truncated save must not
    silently drop every route); ``routes: []`` written out is how a file says "no routes". With ``stores`` (the
    names the proxy's settings open), a ``store:`` naming another store is a problem, not a silent fallback.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([f"{path}: cannot read: {exc}"]) from exc
    return parse_rules(text, str(path), stores=stores)


def check_file(path: str | Path, *, stores: Collection[str] | None = None) -> list[str]:
    """The problems ``load_rules`` would report (an empty list when the file is valid)."""
    try:
        load_rules(path, stores=stores)
    except RulesError as exc:
        return exc.problems
    return []


def parse_rules(text: str, source: str, *, stores: Collection[str] | None = None) -> Rules:
    """``load_rules`` on text already read; ``source`` names the file in messages."""
    try:
        root, data = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise RulesError([f"{source}:{line}:{col}: yaml: {exc.problem or exc.context}"]) from None
    if root is None or data is None:
        raise RulesError([f"{source}:1:1: (file): {_EMPTY}"])
    problems = _duplicate_keys(root, "")
    if isinstance(data, dict) and not {"routes", "defaults"} & set(data):
        problems.append(_at(root, "(file)", _EMPTY))
    model: RulesFile | None = None
    try:
        model = RulesFile.model_validate(data)
    except ValidationError as exc:
        problems.extend(_from_pydantic(root, err) for err in exc.errors())
    problems.extend(_route_problems(root, data))
    if stores is not None:
        problems.extend(_store_problems(root, data, stores))
    if problems or model is None:
        problems.sort()
        raise RulesError([f"{source}:{p.line}:{p.col}: {p.field}: {p.message}" for p in problems])
    return build_rules(model, _route_lines(root), source)


def _compose(text: str) -> tuple[Node | None, Any]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _locate(root: Node, loc: tuple[int | str, ...]) -> tuple[Node, Node | None, str]:
    """The node a pydantic location points at, the key node of its last step, and the dotted field name."""
    node, key_node, parts = root, None, []
    descending = True
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
            if descending and isinstance(node, SequenceNode) and 0 <= part < len(node.value):
                node, key_node = node.value[part], None
            else:
                descending = False
        elif part.replace("_", "").isalnum():
            parts.append(f".{part}")
            pair = _find_key(node, part) if descending else None
            if pair is None:
                descending = False
            else:
                key_node, node = pair
    return node, key_node, "".join(parts).lstrip(".") or "(file)"


def _find_key(node: Node, name: str) -> tuple[Node, Node] | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == name:
                return key, value
    return None


def _at(node: Node, field: str, message: str) -> Problem:
    return Problem(node.start_mark.line + 1, node.start_mark.column + 1, field, message)


def _from_pydantic(root: Node, err: ErrorDetails) -> Problem:
    node, key_node, field = _locate(root, tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden" and key_node is not None:
        name = str(err["loc"][-1])
        hint = _nested_home(err["loc"], name) or difflib.get_close_matches(name, field_names(), n=1)
        message = f"unknown field {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        return _at(key_node, field, message)
    message = _MESSAGES.get(kind) or err["msg"].replace("Input should be", "must be")
    return _at(node, field, message)


def _nested_home(loc: tuple[int | str, ...], name: str) -> list[str]:
    """Where a field placed one level too high belongs: ``path:`` under a route is ``match.path``."""
    homes: list[tuple[str, type[BaseModel]]] = [("key", KeyFields)]
    if len(loc) == 3 and loc[0] == "routes":
        homes.insert(0, ("match", MatchFields))
    elif not (len(loc) == 2 and loc[0] == "defaults"):
        return []
    return [f"{prefix}.{name}" for prefix, model in homes if name in model.model_fields][:1]


def _duplicate_keys(node: Node, path: str) -> list[Problem]:
    """YAML keeps the last of two equal keys silently; a rules file must not."""
    problems: list[Problem] = []
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            field = f"{path}.{name}".lstrip(".")
            if name in seen:
                problems.append(_at(key, field, f"duplicate key {name!r}"))
            seen.add(name)
            problems.extend(_duplicate_keys(value, field))
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, f"{path}[{i}]"))
    return problems


def _valid_routes(data: Any) -> list[tuple[int, RouteFields]]:
    """The routes that validate on their own, so cross-route checks run even when another route is broken."""
    raw = data.get("routes") if isinstance(data, dict) else None
    valid: list[tuple[int, RouteFields]] = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            valid.append((i, RouteFields.model_validate(item)))
        except ValidationError:
            continue
    return valid


def _route_problems(root: Node, data: Any) -> list[Problem]:
    problems = _duplicate_names(root, data)
    routes = _valid_routes(data)
    for i, route in routes:
        problems.extend(_own_problems(root, i, route))
        shadow = next(((j, r) for j, r in routes if j < i and _covers(r, route)), None)
        if shadow is not None:
            node, _, field = _locate(root, ("routes", i))
            line = _locate(root, ("routes", shadow[0]))[0].start_mark.line + 1
            message = f"unreachable: every request it matches goes to route {shadow[1].name!r} (line {line})"
            problems.append(_at(node, field, message))
    return problems


def _covers(a: RouteFields, b: RouteFields) -> bool:
    return covers(a.match, b.match, a_ignores_case=_ignores_case(a), b_ignores_case=_ignores_case(b))


def _ignores_case(route: RouteFields) -> bool:
    return ignores_case(route.match.case_insensitive, route.bypass)


def _store_problems(root: Node, data: Any, stores: Collection[str]) -> list[Problem]:
    """``store: redis`` with no Redis store configured would quietly use memory: say so instead."""
    places: list[tuple[int | str, ...]] = [("routes", i) for i, _ in _valid_routes(data)] + [("defaults",)]
    problems: list[Problem] = []
    for place in places:
        node, key_node, field = _locate(root, (*place, "store"))
        if key_node is None or not isinstance(node, ScalarNode) or node.tag.endswith(":null") or node.value in stores:
            continue
        message = (
            f"store {node.value!r} is not configured: serve with --store redis://… (or CACHEPROXY_STORE), "
            f"or remove this line (configured: {', '.join(sorted(stores))})"
        )
        problems.append(_at(node, field, message))
    return problems


def _duplicate_names(root: Node, data: Any) -> list[Problem]:
    raw = data.get("routes") if isinstance(data, dict) else None
    problems: list[Problem] = []
    first_by_name: dict[str, int] = {}
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in first_by_name:
            node, _, field = _locate(root, ("routes", i, "name"))
            first = _locate(root, ("routes", first_by_name[name]))[0].start_mark.line + 1
            problems.append(_at(node, field, f"duplicate route name {name!r} (first at line {first})"))
        first_by_name.setdefault(name, i)
    return problems


def _own_problems(root: Node, i: int, route: RouteFields) -> list[Problem]:
    problems: list[Problem] = []
    if route.match.path is not None and route.match.regex is not None:
        node, _, field = _locate(root, ("routes", i, "match", "regex"))
        problems.append(_at(node, field, "set either path or regex, not both"))
    caching = [name for name in _CACHING if name in route.model_fields_set]
    if route.bypass and caching:
        node, _, field = _locate(root, ("routes", i, caching[0]))
        problems.append(_at(node, field, "has no effect on a route with bypass: true"))
    for k, method in enumerate(route.match.methods or ()):
        if caching and method in UNSAFE_METHODS:
            node, _, field = _locate(root, ("routes", i, "match", "methods", k))
            message = f"{method} responses are never reused (RFC 9111 §4.4); drop it or {caching[0]}"
            problems.append(_at(node, field, message))
    return problems


def _route_lines(root: Node) -> list[int]:
    pair = _find_key(root, "routes")
    if pair is None or not isinstance(pair[1], SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in pair[1].value]


def build_rules(model: RulesFile, lines: list[int], source: str) -> Rules:
    """Resolve each route against the defaults into frozen runtime ``Route`` values."""
    default = resolve_route(None, model.defaults, 0)
    routes = tuple(
        resolve_route(route, model.defaults, lines[i] if i < len(lines) else 0) for i, route in enumerate(model.routes)
    )
    return Rules(routes, default, source)


def resolve_route(route: RouteFields | None, defaults: DefaultsFields, line: int) -> Route:
    """A runtime route: the route's own fields where it set them, the defaults' elsewhere."""

    def pick(name: str) -> Any:
        if route is not None and name in route.model_fields_set:
            return getattr(route, name)
        return getattr(defaults, name)

    statuses = pick("statuses")
    policy = Policy(
        ttl=pick("ttl"),
        override=pick("override"),
        statuses=None if statuses is None else frozenset(statuses),
        stale_while_revalidate=pick("stale_while_revalidate"),
        stale_if_error=pick("stale_if_error"),
        set_cookie=pick("set_cookie"),
        ignore_private=pick("ignore_private"),
        max_object_size=pick("max_object_size"),
        heuristic_fraction=defaults.heuristic_fraction,
        heuristic_max=defaults.heuristic_max,
        keep=defaults.keep,
    )
    match = route.match if route is not None else None
    passed = frozenset(name.lower() for name in pick("pass_headers"))
    return Route(
        name=route.name if route is not None else "default",
        line=line,
        bypass=route.bypass if route is not None else False,
        policy=policy,
        key=_key_spec(route.key if route is not None and "key" in route.model_fields_set else None, defaults, passed),
        store=pick("store"),
        tags=tuple(pick("tags")),
        coalesce=pick("coalesce"),
        coalesce_timeout=pick("coalesce_timeout"),
        pass_headers=passed,
        methods=None if match is None or match.methods is None else frozenset(match.methods),
        host=None if match is None or match.host is None else match.host.lower(),
        path=None if match is None else match.path,
        regex=None if match is None else match.regex,
        case_insensitive=None if match is None else match.case_insensitive,
    )


def _key_spec(own: KeyFields | None, defaults: DefaultsFields, passed: frozenset[str]) -> KeySpec:
    """The route's key recipe; a field it passes upstream (``pass_headers``) joins ``headers`` like ``key.headers``."""

    def pick(name: str) -> Any:
        return getattr(own if own is not None and name in own.model_fields_set else defaults.key, name)

    keep = pick("keep_params")
    return KeySpec(
        ignore_params=tuple(pick("ignore_params")),
        keep_params=None if keep is None else tuple(keep),
        sort_params=pick("sort_params"),
        headers=tuple(dict.fromkeys([*(h.lower() for h in pick("headers")), *sorted(passed)])),
        cookies=tuple(pick("cookies")),
    )

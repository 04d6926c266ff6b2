"""Each kind of problem in rules.yaml is reported as ``file:line:col: field: message``, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.errors import RulesError
from proxy.rules.loader import check_file, load_rules
from tests.rules import problems, write

EMPTY = "no 'routes:' and no 'defaults:' (an empty or truncated file?); write 'routes: []' to mean no routes"
ROUTE = "routes:\n  - name: r\n    match: {path: /r}\n"
STRIPPED = "X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override, X-Forwarded-Scheme, X-Host, Forwarded"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            ROUTE + "    ttl: soon\n",
            "rules.yaml:4:10: routes[0].ttl: must be a duration like 30s, 5m, 1h, 1d, 250ms or plain seconds",
            id="rules-error-bad-duration",
        ),
        pytest.param(
            ROUTE + "    ttl: -5\n",
            "rules.yaml:4:10: routes[0].ttl: must be a duration like 30s, 5m, 1h, 1d, 250ms or plain seconds",
            id="rules-error-negative-duration",
        ),
        pytest.param(
            ROUTE + "    max_object_size: 10MB\n",
            "rules.yaml:4:22: routes[0].max_object_size: must be a size like 512KiB, 10MiB, 1GiB or plain bytes",
            id="rules-error-bad-size",
        ),
        pytest.param(
            ROUTE + "    tll: 5m\n",
            "rules.yaml:4:5: routes[0].tll: unknown field 'tll' (did you mean 'ttl'?)",
            id="rules-error-unknown-field-points-at-key",
        ),
        pytest.param(
            "defaults:\n  key:\n    ignore: [utm_*]\n",
            "rules.yaml:3:5: defaults.key.ignore: unknown field 'ignore' (did you mean 'ignore_params'?)",
            id="rules-error-unknown-nested-field",
        ),
        pytest.param(
            ROUTE + "    override: yes please\n",
            "rules.yaml:4:15: routes[0].override: must be true or false",
            id="rules-error-not-a-boolean",
        ),
        pytest.param(
            ROUTE + "    set_cookie: keep\n",
            "rules.yaml:4:17: routes[0].set_cookie: must be 'bypass', 'strip' or 'store'",
            id="rules-error-bad-set-cookie",
        ),
        pytest.param(
            ROUTE + "    store: disk\n",
            "rules.yaml:4:12: routes[0].store: must be 'memory' or 'redis'",
            id="rules-error-bad-store",
        ),
        pytest.param(
            ROUTE + "    statuses: [200, 999]\n",
            "rules.yaml:4:21: routes[0].statuses[1]: must be less than or equal to 599",
            id="rules-error-bad-status",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {regex: '/a(b'}\n",
            "rules.yaml:3:20: routes[0].match.regex: bad regex: missing ), unterminated subpattern at position 2",
            id="rules-error-bad-regex",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {path: /a**}\n",
            "rules.yaml:3:19: routes[0].match.path: bad path glob: ** must be a whole segment, like /api/**",
            id="rules-error-bad-glob",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {path: api/**}\n",
            "rules.yaml:3:19: routes[0].match.path: bad path glob: must start with /",
            id="rules-error-glob-without-slash",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {methods: [GET, get]}\n",
            "rules.yaml:3:28: routes[0].match.methods[1]: methods are case-sensitive: write GET",
            id="rules-error-lower-case-method",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {host: 'https://a.example'}\n",
            "rules.yaml:3:19: routes[0].match.host: must be a host name or glob like *.example.com, "
            "without scheme or path",
            id="rules-error-host-with-scheme",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {path: /a, regex: /a}\n",
            "rules.yaml:3:30: routes[0].match.regex: set either path or regex, not both",
            id="rules-error-path-and-regex",
        ),
        pytest.param(
            "routes:\n  - match: {path: /a}\n",
            "rules.yaml:2:5: routes[0].name: required field is missing",
            id="rules-error-missing-name",
        ),
        pytest.param(
            "routes:\n  - name: a\n    match: {path: /a}\n  - name: a\n    match: {path: /b}\n",
            "rules.yaml:4:11: routes[1].name: duplicate route name 'a' (first at line 2)",
            id="rules-error-duplicate-route-name",
        ),
        pytest.param(
            ROUTE + "    ttl: 1m\n    ttl: 2m\n",
            "rules.yaml:5:5: routes[0].ttl: duplicate key 'ttl'",
            id="rules-error-duplicate-yaml-key",
        ),
        pytest.param(
            "routes:\n  - name: w\n    match: {path: /w, methods: [GET, POST]}\n    ttl: 1m\n",
            "rules.yaml:3:38: routes[0].match.methods[1]: POST responses are never reused (RFC 9111 §4.4); "
            "drop it or ttl",
            id="rules-error-rfc9111-4.4-unsafe-method-with-caching",
        ),
        pytest.param(
            "routes:\n  - name: b\n    match: {path: /b}\n    bypass: true\n    ttl: 1m\n",
            "rules.yaml:5:10: routes[0].ttl: has no effect on a route with bypass: true",
            id="rules-error-caching-on-bypass-route",
        ),
        pytest.param(
            ROUTE + "    pass_headers: [X-Orginal-URL]\n",
            "rules.yaml:4:20: routes[0].pass_headers[0]: not a field the proxy strips "
            f"(did you mean 'X-Original-URL'?); one of: {STRIPPED}",
            id="rules-error-pass-headers-unknown-field",
        ),
        pytest.param(
            "defaults:\n  pass_headers: [Cookie]\n",
            f"rules.yaml:2:18: defaults.pass_headers[0]: not a field the proxy strips; one of: {STRIPPED}",
            id="rules-error-pass-headers-not-stripped",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {path: /r, case_insensitive: maybe}\n",
            "rules.yaml:3:41: routes[0].match.case_insensitive: must be true or false",
            id="rules-error-case-insensitive-not-a-boolean",
        ),
        pytest.param(
            "routes:\n  name: r\n",
            "rules.yaml:2:3: routes: must be a list",
            id="rules-error-routes-not-a-list",
        ),
        pytest.param(
            "- just\n- a list\n",
            "rules.yaml:1:1: (file): must be a mapping",
            id="rules-error-file-not-a-mapping",
        ),
        pytest.param(
            "routes:\n  - name: r\n    match: {path: /r\n",
            "rules.yaml:4:1: yaml: expected ',' or '}', but got '<stream end>'",
            id="rules-error-yaml-syntax",
        ),
        pytest.param(
            "routes:\n\t- name: r\n",
            "rules.yaml:2:1: yaml: found character '\\t' that cannot start any token",
            id="rules-error-yaml-tab",
        ),
    ],
)
def test_problem_reported_with_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_rules_error_all_problems_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        defaults:
          keep: forever
        routes:
          - name: a
            match: {path: /a}
            tll: 1m
          - name: b
            match: {regex: "("}
            max_object_size: big
          - name: a
            match: {path: /c}
        """,
    )
    assert [p.split(": ")[0] for p in found] == [
        "rules.yaml:2:9",
        "rules.yaml:6:5",
        "rules.yaml:8:20",
        "rules.yaml:9:22",
        "rules.yaml:10:11",
    ]


def test_rules_error_load_rules_raises_with_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, ROUTE + "    ttl: x\n    tags: 3\n")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert len(info.value.problems) == 2
    assert all(p.startswith(f"{path}:") for p in info.value.problems)
    assert str(info.value) == "\n".join(info.value.problems)


def test_rules_error_names_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, ROUTE + "    ttl: x\n")
    monkeypatch.chdir(tmp_path)
    assert check_file("rules.yaml")[0].startswith("rules.yaml:4:10: routes[0].ttl: ")


def test_rules_error_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    [problem] = check_file(missing)
    assert problem.startswith(f"{missing}: cannot read: ")


def test_rules_valid_file_has_no_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, ROUTE) == []


@pytest.mark.parametrize(
    ("first", "second", "shadowed"),
    [
        pytest.param("{}", "{path: /a}", True, id="rules-shadow-no-match-catches-all"),
        pytest.param("{path: /**}", "{regex: /a.*}", True, id="rules-shadow-double-star-catches-all"),
        pytest.param("{path: /api/**}", "{path: /api/products/*}", True, id="rules-shadow-prefix-catch-all"),
        pytest.param("{path: /api/**}", "{path: /api}", True, id="rules-shadow-prefix-includes-itself"),
        pytest.param("{path: /api/**}", "{path: /apis/x}", False, id="rules-shadow-prefix-is-per-segment"),
        pytest.param("{path: /a/*}", "{path: /a/b}", False, id="rules-shadow-single-star-not-catch-all"),
        pytest.param("{path: /a}", "{path: /a}", True, id="rules-shadow-same-path"),
        pytest.param("{methods: [GET]}", "{path: /a}", False, id="rules-shadow-method-subset-does-not-shadow"),
        pytest.param(
            "{methods: [GET, OPTIONS]}", "{path: /a, methods: [HEAD]}", True, id="rules-shadow-method-superset"
        ),
        pytest.param("{host: a.example}", "{path: /a}", False, id="rules-shadow-host-restricted"),
        pytest.param("{host: '*.example.com'}", "{host: a.example.com}", True, id="rules-shadow-host-glob-covers-host"),
        pytest.param("{regex: /a}", "{path: /a}", False, id="rules-shadow-regex-not-compared-to-glob"),
        pytest.param(
            "{path: /a/**}",
            "{path: /a/b, case_insensitive: true}",
            False,
            id="rules-shadow-case-sensitive-prefix-misses-other-case",
        ),
        pytest.param(
            "{path: /**}", "{path: /a/b, case_insensitive: true}", True, id="rules-shadow-catch-all-covers-any-case"
        ),
        pytest.param(
            "{path: /a/**, case_insensitive: true}",
            "{path: /a/b}",
            True,
            id="rules-shadow-case-insensitive-prefix-covers",
        ),
    ],
)
def test_rules_shadowed_route_is_unreachable(tmp_path: Path, first: str, second: str, shadowed: bool) -> None:
    found = problems(
        tmp_path,
        f"routes:\n  - name: first\n    match: {first}\n  - name: second\n    match: {second}\n",
    )
    expected = "rules.yaml:4:5: routes[1]: unreachable: every request it matches goes to route 'first' (line 2)"
    assert found == ([expected] if shadowed else [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", ["rules.yaml:1:1: (file): " + EMPTY], id="issue13-1-empty-file"),
        pytest.param("# all commented out\n", ["rules.yaml:1:1: (file): " + EMPTY], id="issue13-1-comments-only"),
        pytest.param(
            "rotues: []\n",
            [
                "rules.yaml:1:1: (file): " + EMPTY,
                "rules.yaml:1:1: rotues: unknown field 'rotues' (did you mean 'routes'?)",
            ],
            id="issue13-1-no-routes-no-defaults",
        ),
    ],
)
def test_rules_error_empty_file_is_an_error(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "routes:\n  - name: r\n    path: /r/**\n",
            "rules.yaml:3:5: routes[0].path: unknown field 'path' (did you mean 'match.path'?)",
            id="issue13-1-match-field-under-route",
        ),
        pytest.param(
            "routes:\n  - name: r\n    methods: [GET]\n",
            "rules.yaml:3:5: routes[0].methods: unknown field 'methods' (did you mean 'match.methods'?)",
            id="issue13-1-methods-under-route",
        ),
        pytest.param(
            "routes:\n  - name: r\n    ignore_params: [utm_*]\n",
            "rules.yaml:3:5: routes[0].ignore_params: unknown field 'ignore_params'"
            " (did you mean 'key.ignore_params'?)",
            id="issue13-1-key-field-under-route",
        ),
        pytest.param(
            "defaults:\n  sort_params: true\n",
            "rules.yaml:2:3: defaults.sort_params: unknown field 'sort_params' (did you mean 'key.sort_params'?)",
            id="issue13-1-key-field-under-defaults",
        ),
    ],
)
def test_rules_error_misplaced_field_hint_names_its_home(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]

"""The top-level rules.yaml is valid and documents every field of the model."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.rules.loader import check_file, load_rules
from proxy.rules.model import field_names

EXAMPLE = Path(__file__).resolve().parents[2] / "rules.yaml"


def test_example_rules_file_is_valid() -> None:
    assert check_file(EXAMPLE) == []


def test_example_rules_file_documents_every_field() -> None:
    text = EXAMPLE.read_text()
    used = set(re.findall(r"^\s*(?:- )?([a-z_]+):", text, flags=re.MULTILINE))
    used |= set(re.findall(r"[{,]\s*([a-z_]+):", text))
    assert field_names() - used == set()


def test_example_rules_file_routes_behave_as_commented() -> None:
    rules = load_rules(EXAMPLE)
    assert rules.match("GET", "shop.example", "/account/orders").bypass
    assert rules.match("GET", "shop.example", "//ACCOUNT;x/orders").name == "account"
    legacy = rules.match("GET", "x", "/legacy/page")
    assert legacy.pass_headers == frozenset({"x-original-url"})
    assert "x-original-url" in legacy.key.headers
    products = rules.match("GET", "a.example.com", "/api/products/1")
    assert products.name == "products"
    assert products.policy.override
    assert rules.match("GET", "example.com", "/api/products/1").name != "products"
    assert rules.match("GET", "x", "/api/suggest").name == "search"

"""The ``Cache-Debug: 1`` headers from loopback: the route, the opaque key, and the readable parts of the key."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.cache.keys import ABSENT
from tests.admin.conftest import CACHEABLE, run_proxy
from tests.support.origin import RunningOrigin

RULES = """\
routes:
  - name: shaped
    match: {path: /shaped}
    ttl: 60s
    key:
      ignore_params: [utm_*]
      sort_params: true
      headers: [X-Tenant]
      cookies: [lang]
"""


def parts(header: str) -> dict[str, str]:
    """``name="value"; ...`` back into a mapping (the values are JSON strings)."""
    out: dict[str, str] = {}
    for item in header.split("; "):
        name, _, value = item.partition("=")
        out[name] = json.loads(value)
    return out


async def test_issue13_14_cache_key_parts_reads_what_the_key_hashes(origin: RunningOrigin, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    origin.set("/shaped", headers=CACHEABLE, body="s")
    async with run_proxy(origin.url, rules=rules) as proxy:
        debug = {"Cache-Debug": "1", "X-Tenant": 'acme "east"'}
        response = await proxy.client.get("/shaped?b=2&utm_source=x&a=1", headers=debug)
        host = proxy.url.removeprefix("http://")
        assert response.headers["cache-route"] == "shaped"
        assert response.headers["cache-key"].startswith("c:")
        assert parts(response.headers["cache-key-parts"]) == {
            "method": "GET",
            "scheme": "http",
            "host": host,
            "path": "/shaped",
            "query": "a=1&b=2",
            "header:x-tenant": 'acme "east"',
            "cookie:lang": ABSENT,
        }
        same_key = await proxy.client.get("/shaped?a=1&b=2", headers=debug)  # a hit under the same key
        assert same_key.headers["cache-key"] == response.headers["cache-key"]
        assert same_key.headers["cache-key-parts"] == response.headers["cache-key-parts"]
        plain = await proxy.client.get("/shaped?a=1&b=2", headers={"X-Tenant": 'acme "east"'})
        assert "cache-key-parts" not in plain.headers

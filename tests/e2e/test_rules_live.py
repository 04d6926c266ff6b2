"""rules.yaml in a running proxy: each routing and caching field seen from the client and the origin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Proxied, run_proxy
from tests.support.origin import RunningOrigin

RULES = """\
defaults:
  stale_if_error: 0s
routes:
  - name: account
    match: {path: /account/**}
    bypass: true
  - name: forced
    match: {path: /forced/**}
    ttl: 60s
    override: true
    statuses: [200, 404]
  - name: default-ttl
    match: {path: /default-ttl/**}
    ttl: 60s
  - name: shaped
    match: {path: /shaped}
    ttl: 60s
    key:
      ignore_params: [utm_*]
      sort_params: true
      headers: [X-Tenant]
  - name: cookies
    match: {path: /cookie/**}
    ttl: 60s
    set_cookie: strip
  - name: lonely
    match: {path: /lonely}
    ttl: 60s
    coalesce: false
"""


@pytest.fixture
async def ruled(origin: RunningOrigin, tmp_path: Path) -> Proxied:
    async with run_proxy(origin, RULES, tmp_path) as proxy:
        yield proxy  # type: ignore[misc]


def status(response: object) -> str:
    return response.headers["cache-status"]  # type: ignore[attr-defined, no-any-return]


async def test_rule_bypass_never_looks_up_or_stores(ruled: Proxied) -> None:
    ruled.origin.set("/account/me", headers={"Cache-Control": "max-age=60"}, body="me")
    first = await ruled.client.get("/account/me")
    await ruled.client.get("/account/me")
    assert status(first) == "cacheproxy; fwd=bypass; detail=rule"
    assert ruled.origin.hits["/account/me"] == 2


async def test_rule_override_ttl_beats_origin_no_cache(ruled: Proxied) -> None:
    ruled.origin.set("/forced/a", headers={"Cache-Control": "no-cache, max-age=0"}, body="a")
    await ruled.client.get("/forced/a")
    hit = await ruled.client.get("/forced/a")
    assert status(hit).startswith("cacheproxy; hit; ttl=")
    assert ruled.origin.hits["/forced/a"] == 1


async def test_rule_override_still_respects_private(ruled: Proxied) -> None:
    ruled.origin.set("/forced/p", headers={"Cache-Control": "private"}, body="p")
    response = await ruled.client.get("/forced/p")
    assert status(response).endswith("detail=private")


async def test_rule_statuses_store_404_under_forced_ttl(ruled: Proxied) -> None:
    ruled.origin.set("/forced/missing", status=404, body="nope")
    await ruled.client.get("/forced/missing")
    again = await ruled.client.get("/forced/missing")
    assert again.status_code == 404
    assert "hit" in status(again)


async def test_rule_ttl_applies_only_when_origin_is_silent(ruled: Proxied) -> None:
    ruled.origin.set("/default-ttl/silent", body="s")
    ruled.origin.set("/default-ttl/says", headers={"Cache-Control": "max-age=0"}, body="x")
    await ruled.client.get("/default-ttl/silent")
    assert "hit" in status(await ruled.client.get("/default-ttl/silent"))
    await ruled.client.get("/default-ttl/says")
    assert "hit" not in status(await ruled.client.get("/default-ttl/says"))


async def test_rule_key_ignored_and_sorted_params_share_one_entry(ruled: Proxied) -> None:
    await ruled.client.get("/shaped?b=2&a=1&utm_source=mail")
    hit = await ruled.client.get("/shaped?a=1&utm_campaign=x&b=2")
    assert "hit" in status(hit)
    other = await ruled.client.get("/shaped?a=1&b=3")
    assert "hit" not in status(other)


async def test_rule_key_header_separates_entries(ruled: Proxied) -> None:
    await ruled.client.get("/shaped", headers={"X-Tenant": "a"})
    assert "hit" not in status(await ruled.client.get("/shaped", headers={"X-Tenant": "b"}))
    assert "hit" in status(await ruled.client.get("/shaped", headers={"X-Tenant": "a"}))


async def test_rule_set_cookie_strip_gives_cookie_only_to_the_fetching_client(ruled: Proxied) -> None:
    ruled.origin.set("/cookie/x", headers=[("Set-Cookie", "track=1")], body="c")
    first = await ruled.client.get("/cookie/x")
    ruled.client.cookies.clear()
    second = await ruled.client.get("/cookie/x")
    assert first.headers["set-cookie"] == "track=1"
    assert "set-cookie" not in second.headers
    assert "hit" in status(second)


async def test_rule_coalesce_off_sends_each_miss_upstream(ruled: Proxied) -> None:
    ruled.origin.set("/lonely", body="l", delay=0.2)
    await asyncio.gather(*(ruled.client.get("/lonely") for _ in range(5)))
    assert ruled.origin.hits["/lonely"] == 5


async def test_cache_debug_header_from_loopback_shows_key_and_route(ruled: Proxied) -> None:
    response = await ruled.client.get("/shaped?a=1", headers={"Cache-Debug": "1"})
    assert response.headers["cache-route"] == "shaped"
    assert response.headers["cache-key"].startswith("c:")
    plain = await ruled.client.get("/shaped?a=1")
    assert "cache-key" not in plain.headers


async def test_hot_reload_by_edit_keeps_entries_and_rejects_bad_files(origin: RunningOrigin, tmp_path: Path) -> None:
    async with run_proxy(origin, RULES, tmp_path) as proxy:
        origin.set("/default-ttl/kept", body="k")
        await proxy.client.get("/default-ttl/kept")
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(RULES.replace("/account/**", "/private/**"))
        for _ in range(40):
            if status(await proxy.client.get("/private/x")).endswith("detail=rule"):
                break
            await asyncio.sleep(0.1)
        assert status(await proxy.client.get("/private/x")).endswith("detail=rule")
        assert "hit" in status(await proxy.client.get("/default-ttl/kept"))  # entries survive a reload
        rules_file.write_text("routes:\n  - name: broken\n    ttl: soon\n")
        await asyncio.sleep(1.5)
        assert status(await proxy.client.get("/private/x")).endswith("detail=rule")  # last good rules serve


def test_serve_refuses_an_invalid_rules_file(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("routes:\n  - name: x\n    match: {path: /a}\n    ttl: soon\n")
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--upstream", "http://127.0.0.1:9", "--rules", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert result.returncode == 1
    assert f"{bad}:4:10: routes[0].ttl: must be a duration" in result.stderr


async def test_hot_reload_reaches_urls_already_served_from_the_hit_fast_path(
    origin: RunningOrigin, tmp_path: Path
) -> None:
    async with run_proxy(origin, RULES, tmp_path) as proxy:
        origin.set("/default-ttl/hot", body="h")
        await proxy.client.get("/default-ttl/hot")
        assert "hit" in status(await proxy.client.get("/default-ttl/hot"))  # memoised by the hot path now
        (tmp_path / "rules.yaml").write_text(RULES.replace("/account/**", "/default-ttl/hot"))
        for _ in range(40):
            if status(await proxy.client.get("/default-ttl/hot")).endswith("detail=rule"):
                break
            await asyncio.sleep(0.1)
        assert status(await proxy.client.get("/default-ttl/hot")) == "cacheproxy; fwd=bypass; detail=rule"

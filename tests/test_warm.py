"""``cacheproxy warm``: Cache-Status classification, rate and targets, then the command against a real proxy process
and a real origin (and two proxies sharing a real redis-server: one warming fills the cache for both)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from proxy.clock import FakeClock
from proxy.errors import ConfigError
from proxy.warm import RateLimit, Verdict, classify, parse_rate, request_parts
from tests.support.origin import RunningOrigin
from tests.support.servers import free_port, run_process

CACHEABLE = {"Cache-Control": "max-age=300"}
ENV = {"PYTHONPATH": os.getcwd()}


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        pytest.param(200, "cacheproxy; fwd=uri-miss; stored", Verdict("stored"), id="rfc9211-2.5-stored"),
        pytest.param(200, "cacheproxy; fwd=miss; collapsed", Verdict("stored"), id="rfc9211-collapsed-is-stored"),
        pytest.param(200, "cacheproxy; fwd=stale; fwd-status=304; stored", Verdict("stored"), id="revalidated"),
        pytest.param(200, "cacheproxy; hit; ttl=41", Verdict("fresh"), id="rfc9211-2.1-hit-fresh"),
        pytest.param(200, "cacheproxy; hit; ttl=-3", Verdict("stale", "stale"), id="rfc9211-2.4-negative-ttl-stale"),
        pytest.param(
            200,
            "cacheproxy; hit; ttl=-3; detail=stale-while-revalidate",
            Verdict("stale", "stale-while-revalidate"),
            id="rfc5861-swr",
        ),
        pytest.param(
            200, "cacheproxy; fwd=uri-miss; detail=private", Verdict("not-storable", "private"), id="rfc9211-2.8-detail"
        ),
        pytest.param(200, "cacheproxy; fwd=bypass", Verdict("not-storable", "fwd=bypass"), id="rfc9211-2.2-fwd"),
        pytest.param(
            200, "origin-cache; hit, cacheproxy; fwd=uri-miss; stored", Verdict("stored"), id="rfc9211-2-ours-is-last"
        ),
        pytest.param(200, None, Verdict("not-storable", "no Cache-Status from the proxy"), id="no-cache-status"),
        pytest.param(502, "cacheproxy; fwd=uri-miss", Verdict("error", "HTTP 502"), id="5xx-is-an-error"),
        pytest.param(None, None, Verdict("error", "no answer"), id="no-answer-is-an-error"),
    ],
)
def test_classify_reads_our_cache_status_member(status: int | None, header: str | None, expected: Verdict) -> None:
    assert classify(status, header) == expected


@pytest.mark.parametrize(("text", "per_second"), [("50/s", 50.0), ("600/m", 10.0), ("7", 7.0), ("0", 0.0)])
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["fast", "5/week", "-1/s"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="--rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/a?b=1", ("/a?b=1", {})),
        ("a", ("/a", {})),
        ("https://api.example.test/v1/x?q=2", ("/v1/x?q=2", {"host": "api.example.test"})),
        ("http://api.example.test", ("/", {"host": "api.example.test"})),
    ],
)
def test_request_parts_absolute_urls_keep_their_authority_as_host(
    target: str, expected: tuple[str, dict[str, str]]
) -> None:
    assert request_parts(target) == expected


async def test_rate_limit_spaces_starts_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    """50/s: starts 20 ms apart on the injected clock (the sleeps are recorded, not waited)."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(round(seconds, 6))

    monkeypatch.setattr("proxy.warm.asyncio.sleep", record)
    limit = RateLimit(50, FakeClock())
    for _ in range(4):
        await limit.wait()
    assert slept == [0.02, 0.04, 0.06]


@contextmanager
def proxy_process(origin: RunningOrigin, *extra: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "proxy", "serve", "--upstream", origin.url, "--port", str(port), *extra]
    with run_process([*args, "--no-access-log"], ready_url=url + "/_cacheproxy/healthz", env=ENV, timeout=60):
        yield url


async def warm(*args: str) -> subprocess.CompletedProcess[str]:
    """``cacheproxy warm`` as a process (this loop keeps serving the origin meanwhile)."""
    command = [sys.executable, "-m", "proxy", "warm", *args]
    env = {**os.environ, **ENV}
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, env=env, timeout=120)


def set_routes(origin: RunningOrigin) -> None:
    origin.set("/a", headers=CACHEABLE, body="a" * 100)
    origin.set("/b", headers=CACHEABLE, body="b" * 100)
    origin.set("/p", headers={"Cache-Control": "private"}, body="private")
    origin.set("/boom", status=500, body="down")


async def test_warm_urls_file_summary_and_failure_share(origin: RunningOrigin, tmp_path: Path) -> None:
    set_routes(origin)
    with proxy_process(origin) as url:
        urls = tmp_path / "urls.txt"
        urls.write_text(f"# warmed after deploy\n/a\n{url}/b\n\n/p?x=1\n/boom\n")
        first = await warm("--proxy", url, str(urls), "--rate", "0", "--concurrency", "2")
        second = await warm("--proxy", url, str(urls), "--max-failures", "0.5", "--rate", "100/s")
        async with httpx.AsyncClient(base_url=url) as client:
            after = (await client.get("/a")).headers["cache-status"]
    assert first.returncode == 1, first.stderr  # 1 error in 4 requests is more than the default 10 %
    assert "25% of requests failed (allowed 10%)" in first.stderr
    lines = dict(line.split(None, 1) for line in first.stdout.splitlines()[1:] if line.startswith("  stored"))
    assert first.stdout.splitlines()[0] == "warmed 4 URLs"
    assert lines == {"stored": "2"}
    assert "not storable        1 (private: 1)" in first.stdout
    assert "errors              1 (HTTP 500: 1)" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "already fresh       2" in second.stdout
    assert origin.hits["/a"] == 1 and origin.hits["/b"] == 1  # the second run was answered from the cache
    assert after.startswith("cacheproxy; hit")


async def test_warm_from_log_takes_the_top_storable_targets(origin: RunningOrigin, tmp_path: Path) -> None:
    set_routes(origin)
    origin.set("/c", headers=CACHEABLE, body="c")
    log = tmp_path / "access.log"
    lines = [{"logger": "uvicorn.error", "message": "Started server process"}]
    for target, times, storable in (("/a", 3, True), ("/p", 5, False), ("/b", 2, True), ("/c", 1, True)):
        lines += [
            {"logger": "cacheproxy.access", "time": "2026-01-01T00:00:00", "path": target, "key": f"k{target}",
             "size": 100, "storable": storable}
        ] * times  # fmt: skip
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with proxy_process(origin) as url:
        result = await warm("--proxy", url, "--from-log", str(log), "--top", "2")
    assert result.returncode == 0, result.stderr
    assert "stored              2" in result.stdout
    assert (origin.hits["/a"], origin.hits["/b"], origin.hits["/c"], origin.hits["/p"]) == (1, 1, 0, 0)


async def test_warm_from_sitemap_index(origin: RunningOrigin) -> None:
    set_routes(origin)
    with proxy_process(origin) as url:
        ns = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
        origin.set(
            "/sitemap.xml",
            headers={"Content-Type": "application/xml"},
            body=f"<urlset {ns}><url><loc>{url}/a</loc></url><url><loc> {url}/b </loc></url></urlset>",
        )
        origin.set(
            "/sitemap_index.xml",
            body=f"<sitemapindex {ns}><sitemap><loc>{origin.url}/sitemap.xml</loc></sitemap></sitemapindex>",
        )
        result = await warm("--proxy", url, "--sitemap", f"{origin.url}/sitemap_index.xml")
    assert result.returncode == 0, result.stderr
    assert "stored              2" in result.stdout
    assert (origin.hits["/a"], origin.hits["/b"]) == (1, 1)


async def test_warm_unreachable_proxy_fails(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("/a\n/b\n")
    result = await warm("--proxy", f"http://127.0.0.1:{free_port()}", str(urls), "--rate", "0")
    assert result.returncode == 1
    assert "errors              2 (ConnectError: 2)" in result.stdout


@pytest.mark.redis
async def test_warm_one_instance_fills_the_shared_redis_cache_for_all(
    origin: RunningOrigin, redis_url: str, tmp_path: Path
) -> None:
    """Instances behind one public name share keys: the URLs name it, and warm sends it as the Host."""
    set_routes(origin)
    urls = tmp_path / "urls.txt"
    urls.write_text("https://api.example.test/a\nhttps://api.example.test/b\n")
    with proxy_process(origin, "--store", redis_url) as first, proxy_process(origin, "--store", redis_url) as second:
        result = await warm("--proxy", first, str(urls))
        async with httpx.AsyncClient(base_url=second, headers={"Host": "api.example.test"}) as client:
            statuses = [(await client.get(path)).headers["cache-status"] for path in ("/a", "/b")]
    assert result.returncode == 0, result.stderr
    assert all(status.startswith("cacheproxy; hit") for status in statuses), statuses
    assert (origin.hits["/a"], origin.hits["/b"]) == (1, 1)

"""Hot reload: by edit, by atomic rename, by SIGHUP; an invalid file keeps the last good rules."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from proxy.errors import RulesError
from proxy.rules.reload import RulesHolder

EMPTY_MESSAGE = "no 'routes:' and no 'defaults:' (an empty or truncated file?); write 'routes: []' to mean no routes"
WAIT = 5.0  # seconds: a bound on waiting for the watcher, not a measurement


def routes_named(name: str) -> str:
    return f"routes:\n  - name: {name}\n    match: {{path: /{name}/**}}\n"


def put(path: Path, text: str) -> None:
    path.write_text(text)


def remove(path: Path) -> None:
    path.unlink()


async def eventually(predicate: Callable[[], bool]) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[bool, list[str]]] = []

    def __call__(self, ok: bool, problems: list[str]) -> None:
        self.calls.append((ok, problems))


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    put(path, routes_named("old"))
    return path


@pytest.fixture
async def watched(rules_path: Path) -> AsyncIterator[tuple[RulesHolder, Reports]]:
    reports = Reports()
    holder = RulesHolder(rules_path, on_reload=reports)
    task = asyncio.create_task(holder.watch(interval=0.05))
    yield holder, reports
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def current_name(holder: RulesHolder) -> str:
    return holder.current.routes[0].name


def test_reload_holder_loads_at_start(rules_path: Path) -> None:
    assert current_name(RulesHolder(rules_path)) == "old"


def test_reload_holder_without_file_uses_builtin() -> None:
    holder = RulesHolder(None)
    assert holder.current.source == "<builtin>"
    assert holder.reload() is True


def test_reload_holder_refuses_to_start_on_invalid_file(rules_path: Path) -> None:
    put(rules_path, "routes:\n  - name: x\n    ttl: soon\n")
    with pytest.raises(RulesError) as info:
        RulesHolder(rules_path)
    assert info.value.problems[0].startswith(f"{rules_path}:3:10: routes[0].ttl: ")


async def test_reload_by_edit(rules_path: Path, watched: tuple[RulesHolder, Reports]) -> None:
    holder, reports = watched
    put(rules_path, routes_named("edited-in-place"))
    assert await eventually(lambda: current_name(holder) == "edited-in-place")
    assert reports.calls == [(True, [])]


async def test_reload_by_atomic_rename(rules_path: Path, watched: tuple[RulesHolder, Reports]) -> None:
    holder, reports = watched
    temporary = rules_path.with_name(".rules.yaml.tmp")
    put(temporary, routes_named("new"))  # same size as before: only the inode tells it apart
    os.replace(temporary, rules_path)
    assert await eventually(lambda: current_name(holder) == "new")
    assert reports.calls == [(True, [])]
    put(temporary, routes_named("renamed"))
    os.replace(temporary, rules_path)
    assert await eventually(lambda: current_name(holder) == "renamed")


async def test_reload_by_sighup(rules_path: Path) -> None:
    reports = Reports()
    holder = RulesHolder(rules_path, on_reload=reports)
    loop = asyncio.get_running_loop()
    holder.install_sighup(loop)
    try:
        put(rules_path, routes_named("after-hup"))
        assert current_name(holder) == "old"  # no watcher: nothing happens until the signal
        os.kill(os.getpid(), signal.SIGHUP)
        assert await eventually(lambda: current_name(holder) == "after-hup")
        assert reports.calls == [(True, [])]
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def test_reload_invalid_file_keeps_old_rules_and_reports(rules_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reports = Reports()
    holder = RulesHolder(rules_path, on_reload=reports)
    before = holder.current
    put(rules_path, "routes:\n  - name: x\n    match: {path: /x}\n    tll: 1m\n")
    with caplog.at_level(logging.ERROR, logger="proxy.rules.reload"):
        assert holder.reload() is False
    assert holder.current is before
    expected = f"{rules_path}:4:5: routes[0].tll: unknown field 'tll' (did you mean 'ttl'?)"
    assert reports.calls == [(False, [expected])]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert expected in caplog.records[0].getMessage()


async def test_reload_watcher_skips_invalid_then_takes_the_fix(
    rules_path: Path, watched: tuple[RulesHolder, Reports]
) -> None:
    holder, reports = watched
    put(rules_path, "routes: [")
    assert await eventually(lambda: len(reports.calls) == 1)
    assert reports.calls[0][0] is False
    assert current_name(holder) == "old"
    put(rules_path, routes_named("fixed"))
    assert await eventually(lambda: current_name(holder) == "fixed")
    assert [ok for ok, _ in reports.calls] == [False, True]


async def test_reload_missing_file_keeps_rules_warns_once_until_it_returns(
    rules_path: Path, watched: tuple[RulesHolder, Reports], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13 item 1: a deleted rules file keeps the last good rules, with a warning, counted as rejected."""
    holder, reports = watched
    with caplog.at_level(logging.WARNING, logger="proxy.rules.reload"):
        remove(rules_path)
        assert await eventually(lambda: len(reports.calls) == 1)
        await asyncio.sleep(0.3)  # several more polls with the file gone: still one report
    assert current_name(holder) == "old"
    assert reports.calls == [(False, [f"{rules_path}: the rules file is gone; keeping the last good rules (1 routes)"])]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "gone" in warnings[0].getMessage()
    put(rules_path, routes_named("back"))
    assert await eventually(lambda: current_name(holder) == "back")
    assert [ok for ok, _ in reports.calls] == [False, True]


async def test_reload_truncated_file_is_rejected_and_keeps_the_bypass_route(
    rules_path: Path, watched: tuple[RulesHolder, Reports]
) -> None:
    """Issue 13 item 1: ``: > rules.yaml`` (a truncated save) must not drop every route."""
    holder, reports = watched
    put(rules_path, "")
    assert await eventually(lambda: len(reports.calls) == 1)
    ok, problems = reports.calls[0]
    assert ok is False
    assert problems == [f"{rules_path}:1:1: (file): " + EMPTY_MESSAGE]
    assert current_name(holder) == "old"


async def test_reload_routes_written_out_empty_is_accepted(
    rules_path: Path, watched: tuple[RulesHolder, Reports]
) -> None:
    holder, reports = watched
    put(rules_path, "routes: []\n")
    assert await eventually(lambda: len(reports.calls) == 1)
    assert reports.calls == [(True, [])]
    assert holder.current.routes == ()


def test_reload_route_store_redis_without_redis_is_rejected(rules_path: Path) -> None:
    """Issue 13 item 2: with only the memory store open, ``store: redis`` is an error, at start and on reload."""
    reports = Reports()
    holder = RulesHolder(rules_path, on_reload=reports, stores={"memory"})
    put(rules_path, routes_named("r") + "    store: redis\n")
    assert holder.reload() is False
    ((ok, (problem,)),) = reports.calls
    assert ok is False
    assert problem.startswith(f"{rules_path}:4:12: routes[0].store: store 'redis' is not configured")
    assert current_name(holder) == "old"
    with pytest.raises(RulesError):
        RulesHolder(rules_path, stores={"memory"})
    assert current_name(RulesHolder(rules_path, stores={"memory", "redis"})) == "r"

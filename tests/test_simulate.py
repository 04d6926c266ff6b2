"""``cacheproxy simulate``: trace reading, replay through the real policy classes, bounds on known traces, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from load_tests.traces import loop, write_csv, zipf
from proxy.cli import main
from proxy.simulate import Replay, Result, simulate
from proxy.storage.eviction import POLICIES
from proxy.tracelog import Record, TraceReader, top_targets
from tests.admin.conftest import CACHEABLE, run_proxy
from tests.support.origin import RunningOrigin


def by_policy(results: list[Result]) -> dict[str, Result]:
    return {r.policy: r for r in results}


# A loop of 1,000 objects of 1,000 bytes, 30 rounds, through a cache of 900 of them (a loop slightly larger).
LOOP_OBJECTS, LOOP_SIZE, LOOP_BUDGET = 1000, 1000, 900 * 1000


@pytest.fixture(scope="module")
def loop_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traces") / "loop.csv"
    write_csv(loop(objects=LOOP_OBJECTS, rounds=30, size=LOOP_SIZE), path)
    return path


@pytest.fixture(scope="module")
def zipf_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """200,000 requests, Zipf 0.9 over 20,000 objects, a 4,000-key scan every 40,000; and its unique bytes."""
    path = tmp_path_factory.mktemp("traces") / "zipf.csv"
    params = {"objects": 20_000, "requests": 200_000, "scan_every": 40_000, "scan_length": 4_000, "seed": 7}
    write_csv(zipf(**params), path)
    unique = {key: size for _, key, size in zipf(**params)}
    return path, sum(unique.values())


def test_loop_slightly_larger_than_the_cache_lru_and_fifo_hit_nothing_s3fifo_keeps_most(loop_trace: Path) -> None:
    """The known optimum of a loop is (budget / loop) of the requests after the first round, about 0.87 here.

    LRU and FIFO always evict the key asked for next: exactly 0. S3-FIFO's ghost queue sends the re-requested keys
    to main, which then keeps them: bound >= 0.5 (measured 0.65). SIEVE behaves as FIFO on a loop with no hits.
    """
    report = simulate(loop_trace, list(POLICIES), [LOOP_BUDGET], overhead=0, progress=False)
    found = by_policy(report.results)
    assert report.records == LOOP_OBJECTS * 30
    assert found["lru"].hits == 0 and found["fifo"].hits == 0
    assert found["s3fifo"].hit_ratio >= 0.5
    assert found["s3fifo"].hit_ratio <= (29 / 30) * LOOP_BUDGET / (LOOP_OBJECTS * LOOP_SIZE)  # never above optimum
    assert found["s3fifo"].ghost_hits > 0


def test_zipf_with_scans_policies_rank_as_published(zipf_trace: tuple[Path, int]) -> None:
    """At 5 % of the unique bytes (the issue's setting): S3-FIFO and SIEVE above LRU by at least 0.03 (measured
    0.07), LRU above FIFO by at least 0.02 (measured 0.04), S3-FIFO within 0.01 of the best, in object and byte
    hit ratio alike (SOSP 2023 Fig. 6, NSDI 2024 Fig. 7)."""
    path, unique = zipf_trace
    report = simulate(path, list(POLICIES), [unique // 20], overhead=0, progress=False)
    found = by_policy(report.results)
    for ratio in ("hit_ratio", "byte_hit_ratio"):
        r = {name: getattr(result, ratio) for name, result in found.items()}
        assert r["s3fifo"] >= r["lru"] + 0.03, r
        assert r["sieve"] >= r["lru"] + 0.03, r
        assert r["lru"] >= r["fifo"] + 0.02, r
        assert r["s3fifo"] >= max(r.values()) - 0.01, r


def test_results_do_not_depend_on_the_chunk_size(loop_trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trace is replayed in chunks (streaming); chunk boundaries change nothing."""
    whole = simulate(loop_trace, ["s3fifo", "lru"], [LOOP_BUDGET], overhead=0, progress=False)
    monkeypatch.setattr("proxy.simulate.CHUNK", 777)
    chunked = simulate(loop_trace, ["s3fifo", "lru"], [LOOP_BUDGET], overhead=0, progress=False)
    assert [(r.hits, r.evictions) for r in whole.results] == [(r.hits, r.evictions) for r in chunked.results]


def test_replay_counts_bytes_and_charges_the_overhead() -> None:
    replay = Replay("lru", budget=2 * 600, overhead=500)
    replay.feed([Record(0, "a", 100, True, "a"), Record(1, "b", 100, True, "b"), Record(2, "a", 100, True, "a")])
    replay.feed([Record(3, "c", 100, True, "c"), Record(4, "b", 100, True, "b")])  # c evicts b (a was hit)
    result = replay.result()
    assert (result.requests, result.hits, result.evictions) == (5, 1, 2)
    assert (result.bytes_requested, result.bytes_hit) == (500, 100)


def test_replay_with_ttl_expired_entries_are_misses_not_evictions() -> None:
    """The simulated clock is the trace's: an entry stored with ttl 10 at t=0 is a miss at t=10."""
    replay = Replay("s3fifo", budget=1000, overhead=0)
    replay.feed([Record(0, "a", 600, True, "a", 10.0), Record(5, "a", 600, True, "a", 10.0)])
    replay.feed([Record(10, "a", 600, True, "a", 10.0), Record(30, "b", 600, True, "b", 10.0)])
    result = replay.result()
    assert (result.hits, result.evictions) == (1, 0)  # b's victim, a, had expired at 20


def test_an_object_larger_than_the_budget_is_never_stored() -> None:
    replay = Replay("lru", budget=100, overhead=0)
    replay.feed([Record(0, "big", 500, True, "big")] * 3)
    assert (replay.result().hits, replay.result().evictions) == (0, 0)


def test_csv_reader_header_ttl_blank_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp,key,size,ttl\n1.5,/a,10,\n\n2,/b,20,60\nnot,a,line\n3,/c\n")
    reader = TraceReader(path)
    assert list(reader) == [Record(1.5, "/a", 10, True, "/a", None), Record(2.0, "/b", 20, True, "/b", 60.0)]
    assert reader.skipped == 2


async def test_access_log_json_lines_carry_key_size_storable_and_replay(origin: RunningOrigin, tmp_path: Path) -> None:
    """A real proxy's JSON access log: a stored miss, a hit (the hot path), a private (not storable) response, and
    a bypassed POST (no key); simulate replays the storable ones."""
    origin.set("/cached", headers=CACHEABLE, body="c" * 100)
    origin.set("/private", headers={"Cache-Control": "private"}, body="p" * 50)
    written = tmp_path / "written.log"
    async with run_proxy(origin.url, log_format="json", access_log_file=str(written)) as proxy:
        for target in ("/cached", "/cached", "/private"):
            assert (await proxy.client.get(target)).status_code == 200
        await proxy.client.post("/form", content=b"x")
        assert proxy.app.runtime.observer is not None and proxy.app.runtime.observer.access_log is not None
        proxy.app.runtime.observer.access_log.flush()  # the batched writer's lines, now rather than in 100 ms
    lines = written.read_text().splitlines()
    log = tmp_path / "access.log"
    log.write_text('{"logger": "uvicorn.error", "message": "started"}\n' + "\n".join(lines) + "\n")
    fields = [json.loads(line) for line in lines]
    assert [(f["size"], f["storable"], f["outcome"]) for f in fields] == [
        (100, True, "miss"),
        (100, True, "hit"),
        (50, False, "miss"),
        (fields[3]["size"], False, "bypass"),
    ]
    assert fields[0]["key"] == fields[1]["key"] and fields[0]["key"] and fields[3]["key"] is None
    records = list(TraceReader(log))
    assert [(r.target, r.size, r.storable) for r in records] == [
        ("/cached", 100, True),
        ("/cached", 100, True),
        ("/private", 50, False),
    ]
    report = simulate(log, ["lru"], [1 << 20], progress=False)
    assert (report.records, report.not_storable, report.results[0].hits) == (2, 1, 1)
    assert top_targets(log, 5) == ["/cached"]


def test_cli_simulate_prints_the_table(loop_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", str(loop_trace), "--budget", "900000,2MiB", "--policy", "lru,s3fifo", "--overhead", "0"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "30,000 storable requests replayed" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("878.9", "2.0"))]
    assert [(row[2], row[3]) for row in rows] == [
        ("lru", "0.0000"),
        ("s3fifo", rows[1][3]),
        ("lru", "0.9667"),  # 2 MiB holds the whole loop: every round after the first hits
        ("s3fifo", "0.9667"),
    ]
    assert err == ""  # stderr is not a TTY here: no progress bar


def test_cli_simulate_progress_bar_when_asked(
    loop_trace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("proxy.simulate.PROGRESS_DELAY", 0.0)  # shown at once, not after 2 s of replay
    simulate(loop_trace, ["lru"], [LOOP_BUDGET], progress=True)
    assert "replaying" in capsys.readouterr().err


def test_cli_simulate_refuses_unknown_policy_and_missing_file(
    loop_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", str(loop_trace), "--policy", "lru,arc"]) == 2
    assert "unknown eviction policy 'arc'" in capsys.readouterr().err
    assert main(["simulate", str(loop_trace.with_name("missing.csv"))]) == 2
    assert "no such trace file" in capsys.readouterr().err


def test_cli_simulate_plot_png(loop_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "ratio.png"
    assert main(["simulate", str(loop_trace), "--budget", "512KiB,1MiB", "--plot", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_cli_simulate_plot_without_matplotlib_prints_the_table_and_says_why(
    loop_trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    out = tmp_path / "ratio.svg"
    assert main(["simulate", str(loop_trace), "--budget", "1MiB", "--plot", str(out)]) == 1
    captured = capsys.readouterr()
    assert "hit ratio" in captured.out
    assert "pip install 'cacheproxy[plot]'" in captured.err
    assert not out.exists()

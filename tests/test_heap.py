"""``proxy.heap``: glibc's mmap threshold fixed, so a freed large body leaves no resident hole in the heap.

The allocator's behaviour is shown in fresh interpreters (the setting is process-wide): with glibc's moving threshold
a body smaller than one freed before comes from the heap; with the threshold fixed it gets a mapping of its own.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxy.app import ProxyApp
from proxy.cli import build_parser, settings_from_args
from proxy.config import Settings
from proxy.errors import ConfigError
from proxy.heap import MAX_MMAP_THRESHOLD, set_mmap_threshold

ROOT = Path(__file__).resolve().parents[1]
GLIBC = hasattr(ctypes.CDLL(None), "mallinfo2")  # glibc 2.33 and later

# Prints how many bytes glibc had mapped on its own for a 512 KiB body read after a 1 MiB one was freed.
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from proxy.heap import set_mmap_threshold
    libc = ctypes.CDLL(None)
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc.mallinfo2.restype = Info
    set_mmap_threshold(int(sys.argv[1]))
    first = bytearray(1024 * 1024)  # mapped (over the initial 128 KiB), then freed: glibc may move its threshold
    del first
    before = libc.mallinfo2().hblkhd
    body = bytearray(512 * 1024)
    print(libc.mallinfo2().hblkhd - before)
    """
)


def mapped_for_a_body(threshold: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(threshold)], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_issue14_5_a_fixed_threshold_maps_a_body_that_the_moving_one_carves_from_the_heap() -> None:
    assert mapped_for_a_body(0) == 0  # glibc's own threshold moved to 1 MiB: the body is in the heap
    assert mapped_for_a_body(128 * 1024) >= 512 * 1024  # fixed at 128 KiB: a mapping, unmapped when it is freed


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_setting_the_threshold_says_whether_it_was_set() -> None:
    assert set_mmap_threshold(128 * 1024)
    assert not set_mmap_threshold(0)  # left as it is


@pytest.mark.parametrize("size", [-1, MAX_MMAP_THRESHOLD + 1])
def test_a_threshold_glibc_would_refuse_is_an_error(size: int) -> None:
    with pytest.raises(ValueError, match="mmap threshold"):
        set_mmap_threshold(size)
    with pytest.raises(ConfigError, match="--mmap-threshold"):
        Settings(upstream="http://127.0.0.1:9", mmap_threshold=size)


def test_the_flag_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(*argv: str) -> Settings:
        return settings_from_args(build_parser().parse_args(["serve", "--upstream", "http://127.0.0.1:9", *argv]))

    assert settings().mmap_threshold == 128 * 1024
    assert settings("--mmap-threshold", "256KiB").mmap_threshold == 256 * 1024
    assert settings("--mmap-threshold", "0").mmap_threshold == 0
    monkeypatch.setenv("CACHEPROXY_MMAP_THRESHOLD", "1MiB")
    assert settings().mmap_threshold == 1024 * 1024
    assert Settings.from_env({"CACHEPROXY_UPSTREAM": "http://o", "CACHEPROXY_MMAP_THRESHOLD": "64KiB"}).mmap_threshold
    assert Settings.from_env(Settings(upstream="http://o", mmap_threshold=0).to_env()).mmap_threshold == 0


async def test_each_worker_sets_it_when_its_lifespan_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[int] = []
    monkeypatch.setattr("proxy.runtime.set_mmap_threshold", applied.append)
    app = ProxyApp(Settings(upstream="http://127.0.0.1:9", mmap_threshold=200_000))
    await app.runtime.start()
    await app.runtime.close()
    assert applied == [200_000]

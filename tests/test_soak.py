"""The 60-second soak in CI (issue 14 §6): mixed traffic and faults (the origin down for 10 s) through a real proxy
with the memory store, every response checked against the versions the origin produced. Zero violations: no body
for another key or client, none older than its lifetime and stale windows allow, and no write lost to a fetch that
was in flight when the write's invalidation came (issue 14 §1).
"""

from __future__ import annotations

import argparse

from load_tests.soak import print_report, run_soak


async def test_issue14_a_60s_soak_with_faults_has_no_violations() -> None:
    config = argparse.Namespace(
        duration=60.0, store="memory", workers=1, concurrency=16, keys=200, idle=5.0, seed=1, no_faults=False
    )
    report = await run_soak(config)
    print_report(report)
    assert report.responses > 1000  # it did run
    assert dict(report.violations) == {}, report.examples

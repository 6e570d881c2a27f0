"""`make bench` end to end, at a scale a test can afford: a 20-table SQLite refresh series beside
the naive baseline, through the same script, workers and result file as the real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def test_the_benchmark_measures_tdsync_and_the_baseline_and_writes_its_results(
    tmp_path: Path,
) -> None:
    args = ["--only", "sqlite", "--sqlite-tables", "20", "--churn", "5", "--runs", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = tmp_path.glob("bench-*.json")
    results = json.loads(path.read_text())
    assert results["complete"] is True
    measured = {(r["scenario"], r["impl"]): r["run"] for r in results["runs"]}
    scenarios = ("refresh cold", "refresh warm", "refresh 5 drop+5 add")
    assert set(measured) == {(s, impl) for s in scenarios for impl in ("tdsync", "baseline")}
    for (scenario, impl), run in measured.items():
        assert run["wall_s"] > 0 and run["peak_rss_mb"] > 0, (scenario, impl)
        assert run["statements"] > 0 and run["round_trips"] > 0, (scenario, impl)
    # tdsync lists the SQLite file in 2 queries; the baseline reflects every table.
    assert measured[("refresh warm", "tdsync")]["statements"] == 2
    assert measured[("refresh warm", "baseline")]["statements"] > 20

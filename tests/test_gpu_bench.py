"""The prepared GPU benchmark runs end to end at toy size on the CPU (its --smoke path):
training steps, KSG counts checked against numba and the definitions, the probe."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_bench  # noqa: E402


def test_smoke_runs_every_part_and_checks_counts():
    rows = gpu_bench.run(smoke=True)
    assert [r["part"] for r in rows] == ["a", "a", "b", "b", "c"]
    assert rows[2]["check"] == "counts identical to numba"
    assert rows[3]["check"].endswith("identical to the definitions")
    table = gpu_bench.markdown(rows)
    assert table.count("\n|") == len(rows) + 2  # header, rule, rows

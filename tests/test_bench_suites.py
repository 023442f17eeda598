"""`make bench` runs: each suite, shrunk to seconds, measures fusestore and writes figures.

The bench is not a test (its figures are never judged here); these only prove that what a
user starts with `make bench` gets through every part and reports numbers, not "failed"
or a traceback: the scale suite once shipped unable to start its first part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run `bench/run.py ARGS`; the JSON it wrote."""
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *args, "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        env={**os.environ, "BACKEND": ""},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (written,) = results.glob("*.json")
    answer: dict[str, Any] = json.loads(written.read_text())
    return answer


def fusestore_figures(result: dict[str, Any], key: str) -> dict[str, Any]:
    return {row[key]: row["fusestore"] for row in result["rows"]}


def test_the_scale_suite_measures_every_part(tmp_path: Path) -> None:
    result = bench(
        tmp_path,
        *("--suite", "scale", "--scale", "0.001", "--backend", "moto"),
        *("--tree-files", "100", "--peers", "fusestore"),
    )
    assert not [n for n in result["notes"] if "stopped" in n], result["notes"]
    figures = fusestore_figures(result, "id")
    for figure in ("1.find_cold", "1.find_warm", "1.lsR", "1.stat", "1.ls_flat", "2.ls_cold", "3.find_cold"):
        assert isinstance(figures.get(figure), float), (figure, figures.get(figure))
    assert result["machine"]["rclone"]  # asked of the machine's rclone, installed or not


def test_the_default_suite_measures_a_workload(tmp_path: Path) -> None:
    result = bench(tmp_path, "--only", "a,d", "--scale", "0.01", "--peers", "fusestore")
    figures = fusestore_figures(result, "metric")
    assert len(figures) >= 4
    assert all(isinstance(v, float) for v in figures.values()), figures

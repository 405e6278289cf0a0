"""benchmarks/run_all.py: `--device cuda` without a GPU stops at once with one clear message, and a quick run of the
cheapest benchmark (the command-line start-up) writes a JSON and a Markdown file holding that benchmark's table.

Both run the driver as a user would, in a fresh process (it starts each benchmark as a subprocess of its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RUN_ALL = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"


def run_all(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_ALL), *argv], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda would really run")
def test_cuda_without_a_gpu_exits_2_with_one_clear_message(tmp_path: Path) -> None:
    done = run_all("--device", "cuda", "--budget-s", "420", "--out", str(tmp_path / "results"))
    assert done.returncode == 2, done.stderr
    assert "CUDA is not available on this machine; run with --quick on CPU" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()  # nothing ran, nothing written


def test_quick_run_writes_json_and_markdown_with_the_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = run_all("--quick", "--only", "cli_startup", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "results.json").read_text())
    assert list(report["benchmarks"]) == ["cli_startup"]
    result = report["benchmarks"]["cli_startup"]
    assert result["status"] == "ok" and result["device"] == "cpu"
    assert 0 < result["seconds"] <= result["budget_s"]
    rows = result["tables"]["startup"]
    assert [r["command"] for r in rows] == ["qwen3-scope --help", "qwen3-scope info", 'python -c "import sae_lens"']
    assert all(r["best_s"] > 0 for r in rows) and rows[-1]["median_vs_import"] == 1.0
    text = (out / "results.md").read_text()
    assert "## cli_startup" in text and "| qwen3-scope --help" in text and "median_vs_import" in text
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]  # the scratch folder is gone
    for written in (text, (out / "results.json").read_text()):
        assert str(tmp_path) not in written and str(RUN_ALL.parents[1]) not in written

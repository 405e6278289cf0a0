"""Demo stage `bench`: SAEBench 0.6's own evals on a bundled SAE, through the bench environment when there is one.

Why a subprocess: SAEBench pins numpy < 2, and the main job's environment has numpy 2 (pandas 3, datasets 5), so
SAEBench cannot be imported here. The stage runs `qwen3-scope bench` with the interpreter of a bench environment
(`$QWEN3_SCOPE_BENCH_PYTHON`, or the venv `qwen3_scope.evaluation.bench_env.create_venv` builds and the tests
cache); without one it says how to make one instead of failing, and its section says the numbers were not run.

Quick: one SAE (resid_post, layer 3), core + sparse probing + meta-structure at small sizes. Full: all six evals,
SAEBench's baselines (identity, PCA, random) and larger probe sets.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from qwen3_scope.core.errors import Qwen3ScopeError
from qwen3_scope.demo.state import COMPUTED, DemoState
from qwen3_scope.evaluation.bench_env import PYTHON_ENV, bench_python, venv_dir

SAE_IDS = "organism/resid_post/layer_3"
QUICK = ["--evals", "core", "sparse_probing", "meta_structure", "--train-size", "40", "--test-size", "20"]
QUICK += ["--core-batches", "1", "--core-batch-size", "4", "--meta-train-steps", "20", "--meta-batch-size", "256"]
FULL = ["--evals", "core", "sparse_probing", "scr", "tpp", "absorption", "meta_structure", "--baselines"]
FULL += ["--train-size", "200", "--test-size", "100", "--core-batches", "4", "--core-batch-size", "8"]
FULL += ["--meta-train-steps", "300", "--meta-batch-size", "512"]


class BenchStageError(Qwen3ScopeError):
    """`qwen3-scope bench` failed inside the bench environment (the message carries its output)."""


def bench_command(python: Path, out: Path, full: bool) -> list[str]:
    code = "import sys, qwen3_scope_cli; sys.exit(qwen3_scope_cli.main())"
    return [str(python), "-c", code, "bench", "--ids", SAE_IDS, "--out", str(out), *(FULL if full else QUICK)]


def bench_stage(state: DemoState) -> None:
    python = bench_python()
    title = "SAEBench: the field's benchmark on a bundled SAE (`qwen3-scope bench`)"
    if python is None:
        state.section(
            title,
            "Not run: SAEBench 0.6 needs numpy < 2 and datasets < 4, and this environment has neither, so it runs in "
            "an environment of its own. Build it once (about a minute; torch and SAELens come from this environment) "
            "with `python -c 'from qwen3_scope.evaluation.bench_env import create_venv; print(create_venv())'` "
            f"(it lands in `{venv_dir().parent}/`), or point `{PYTHON_ENV}` at a Python with "
            "`pip install 'qwen3-scope[bench]'`; this stage then runs `qwen3-scope bench` there.",
            numbers="not run (no SAEBench environment on this machine)",
        )
        return
    out = state.out_dir / "bench"
    proc = subprocess.run(bench_command(python, out, state.config.full), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchStageError(f"qwen3-scope bench failed in {python}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    table = (out / "bench.md").read_text().split("\n", 2)[-1]
    state.section(
        title,
        f"SAEBench's own result JSON per eval under `bench/<eval>/` (its schema: they validate against its output "
        f"classes and upload like published SAEBench results).\n\n{table}",
        numbers=f"{COMPUTED}, by SAEBench in its environment, on the bundled SAE {SAE_IDS} and the organism's labelled "
        "held-out splits",
    )

"""Demo stage `bench`: SAEBench 0.6's own evals on the bundled suite, through the bench environment when there is one.

Why a subprocess: SAEBench pins numpy < 2, and the main job's environment has numpy 2 (pandas 3, datasets 5), so
SAEBench cannot be imported here. The stage runs `qwen3-scope bench` with the interpreter of a bench environment
(`$QWEN3_SCOPE_BENCH_PYTHON`, or the venv `qwen3_scope.evaluation.bench_env.create_venv` builds and the tests
cache); without one it says how to make one instead of failing, and its section says the numbers were not run.
The files it wrote are read here (`evaluation.bench_table`, no SAEBench import): the report shows SAEBench's table,
and when the eval stage evaluated the same SAEs, their eval rows with SAEBench's columns joined.

Quick (about 30 s of CPU): one resid_post SAE of the bundled suite (layer 3), core + sparse probing + meta-structure
at small sizes. Full (about half an hour on 2 busy cores): every resid_post SAE (SAEBench's absorption site; 9 with
the sparsity sweep at layer 3), all six evals, SAEBench's baselines (identity, PCA, random) at each of the 6 layers,
larger probe sets: the README's SAEBench table.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from qwen3_scope.core.errors import Qwen3ScopeError
from qwen3_scope.demo.state import COMPUTED, DemoState
from qwen3_scope.evaluation.bench_env import PYTHON_ENV, bench_python, venv_dir
from qwen3_scope.evaluation.bench_table import (
    BenchMismatchError,
    bench_columns,
    bench_markdown,
    check_bench,
    join_bench,
    read_bench,
)

SAE_IDS = {"quick": "organism/resid_post/layer_3", "full": "organism/resid_post/.*"}  # full: 9 SAEs (a sweep at 3)
QUICK = ["--evals", "core", "sparse_probing", "meta_structure", "--train-size", "40", "--test-size", "20"]
QUICK += ["--core-batches", "1", "--core-batch-size", "4", "--meta-train-steps", "20", "--meta-batch-size", "256"]
# full: the README's SAEBench table (6 SAEs + 18 baselines); TPP costs classes^2 x ablation sizes per SAE (the
# organism has 17 classes), so one ablation size (10, the reported one) and 5 probe epochs keep it near half an hour
FULL = ["--evals", "core", "sparse_probing", "scr", "tpp", "absorption", "meta_structure", "--baselines"]
FULL += ["--train-size", "100", "--test-size", "40", "--core-batches", "4", "--core-batch-size", "8"]
FULL += ["--n-values", "10", "--probe-epochs", "5", "--absorption-probe-epochs", "5"]
FULL += ["--meta-train-steps", "300", "--meta-batch-size", "512"]
FULL_NOTE = (
    " The quick demo benches one SAE; `qwen3-scope demo --full` (or the README's command) benches every resid_post "
    "SAE with all six evals and SAEBench's baselines."
)
TITLE = "SAEBench: the field's benchmark on the bundled suite (`qwen3-scope bench`)"


class BenchStageError(Qwen3ScopeError):
    """`qwen3-scope bench` failed inside the bench environment (the message carries its output)."""


def bench_command(python: Path, out: Path, full: bool) -> list[str]:
    code = "import sys, qwen3_scope_cli; sys.exit(qwen3_scope_cli.main())"
    ids = SAE_IDS["full" if full else "quick"]
    return [str(python), "-c", code, "bench", "--ids", ids, "--out", str(out), *(FULL if full else QUICK)]


def how_to_build(reason: str) -> str:
    return (
        f"Not run ({reason}): SAEBench 0.6 needs numpy < 2 and datasets < 4, and this environment has neither, so it "
        "runs in an environment of its own. Build it once (about a minute; torch and SAELens come from this "
        "environment) with `python -c 'from qwen3_scope.evaluation.bench_env import create_venv; print(create_venv())'` "
        f"(it lands in `venvs/{venv_dir().name}/` of `$QWEN3_SCOPE_CACHE`, default `~/.cache/qwen3-scope`), or point "
        f"`{PYTHON_ENV}` at a Python with "
        "`pip install 'qwen3-scope[bench]'`; this stage then runs `qwen3-scope bench` there and shows its table."
    )


def bench_section(state: DemoState, out: Path) -> None:
    """The report section of the bench run in `out`: SAEBench's table (SAEs and baselines), and the eval stage's
    rows of the same SAEs with SAEBench's columns joined when that stage ran on them."""
    run = read_bench(out)
    ids = SAE_IDS["full" if state.config.full else "quick"]
    joined = ""
    if state.eval_table is not None:
        try:
            check_bench(run, zip(state.eval_table["sae_id"], state.eval_table["source"]))
        except BenchMismatchError:  # e.g. `--full` evaluates the suite trained above, bench the bundled one
            pass
        else:
            table = join_bench(state.eval_table, run)
            table = table[table[bench_columns(table)].notna().any(axis=1)]
            columns = ["sae_id", "l0", "fvu", "ce_loss_score", *bench_columns(table)]
            joined = (
                "\n\nThe eval stage's rows of these SAEs with SAEBench's columns joined on `sae_id` (what `qwen3-scope "
                "eval --bench DIR` puts into its table, plots and HTML report):\n\n"
                + table[columns].to_markdown(index=False, floatfmt=".4g")
            )
    seconds = ", ".join(f"{k} {v} s" for k, v in run.seconds.items())
    state.section(
        TITLE,
        f"SAEBench's own result JSON per eval under `bench/<eval>/` (its schema: they validate against its output "
        f"classes and compare with published SAEBench results); `bench/bench.csv` is the table below. Seconds per "
        f"eval: {seconds}.{'' if state.config.full else FULL_NOTE}\n\n{bench_markdown(run)}{joined}",
        numbers=f"{COMPUTED}, by SAEBench in its environment, on the bundled SAEs {ids} and {run.data}",
    )


def bench_stage(state: DemoState) -> None:
    python = bench_python()
    if python is None or not python.exists():
        reason = "no SAEBench environment on this machine"
        if python is not None:
            reason = f"${PYTHON_ENV} names an interpreter that does not exist"
        state.section(TITLE, how_to_build(reason), numbers=f"not run ({reason})")
        return
    out = state.out_dir / "bench"
    proc = subprocess.run(bench_command(python, out, state.config.full), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchStageError(f"qwen3-scope bench failed in {python}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    bench_section(state, out)

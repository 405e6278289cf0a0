"""Benchmark: start-up time of the command line against `python -c "import sae_lens"`, measured in the same run.

Times (best and median of --repeats fresh processes each, wall clock) of `qwen3-scope --help`, `qwen3-scope info`
and `python -c "import sae_lens"`, and each command's ratio to the SAELens import. The goal (issue 24): both
commands under 15 % of the SAELens import. Runs the console script of this interpreter's environment, directly
(not through a version-manager shim, which adds its own start-up). tests/test_cli_startup.py asserts what makes
this fast (no torch, transformers, TransformerLens, SAELens or pandas in those processes).

    python benchmarks/bench_cli_startup.py [--repeats 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import qwen3_scope_cli

qwen3_scope_cli.starting = True  # as the console script: `qwen3_scope` defers torch and SAELens (not needed here)
from qwen3_scope.core.io import atomic_write_json  # noqa: E402


def console_script() -> str:
    script = Path(sys.executable).parent / "qwen3-scope"
    found = str(script) if script.exists() else shutil.which("qwen3-scope")
    if found is None:
        raise SystemExit("the qwen3-scope console script is not installed: pip install -e .")
    return found


def wall_times(argv: list[str], repeats: int) -> list[float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per command (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first, to warm the file cache (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    args = parser.parse_args()

    script = console_script()
    commands = {
        "qwen3-scope --help": [script, "--help"],
        "qwen3-scope info": [script, "info"],
        'python -c "import sae_lens"': [sys.executable, "-c", "import sae_lens"],
    }
    wall_times(commands['python -c "import sae_lens"'], args.warmup)  # warm the file cache for every command alike
    wall_times(commands["qwen3-scope info"], args.warmup)
    results = {name: wall_times(argv, args.repeats) for name, argv in commands.items()}
    reference = statistics.median(results['python -c "import sae_lens"'])
    print(f"{'command':<30} {'best s':>8} {'median s':>9} {'median / import sae_lens':>25}")
    rows = []
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:<30} {min(times):>8.3f} {median:>9.3f} {median / reference:>24.1%}")
        rows.append({"command": name, "best_s": min(times), "median_s": median, "median_vs_import": median / reference})
    if args.json is not None:
        atomic_write_json(args.json, {"benchmark": "bench_cli_startup", "tables": {"startup": rows}}, sort_keys=False)


if __name__ == "__main__":
    main()

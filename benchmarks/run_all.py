"""One command for every benchmark in benchmarks/: each runs in its own process with a time budget, and their result
tables land in one JSON and one Markdown file.

    python benchmarks/run_all.py --quick                           # CPU, small sizes, a few minutes
    python benchmarks/run_all.py --quick --only fast_sae_step cli_startup
    python benchmarks/run_all.py --device cuda --budget-s 420      # a GPU session: real sizes within 420 s

`--quick` runs every benchmark at small sizes (on CPU unless --device says otherwise). Without --quick the sizes are
the real ones (fast training step vs sparsify and SAELens' stock class at 2048x16384x50 and 4096x65536x160, suite
training on a random-weight Qwen3 at Qwen3-0.6B's widths, evaluation at the real vocabulary, dashboards at d_model
2048 x width 16,384), which is meant for a GPU (`--device cuda`); `--device cpu` without --quick runs them on CPU and
takes hours. The budget (`--budget-s`) is split among the benchmarks by weight; time one leaves unused goes to the
next; a benchmark that overruns its share is stopped and reported as timed out. `--device` reaches the scripts that
take it; the others run on CPU and the output says so. Writes `results.json` and `results.md` under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tabulate import tabulate
from tqdm.auto import tqdm

import qwen3_scope_cli

qwen3_scope_cli.starting = True  # qwen3_scope then defers torch and SAELens: this driver only writes files
from qwen3_scope.core.io import atomic_write_json, atomic_write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
NO_CUDA = (
    "CUDA is not available on this machine; run with --quick on CPU (python benchmarks/run_all.py --quick), "
    "or run --device cuda on a machine with a GPU."
)
PROGRESS = re.compile(r"\d+%\||it/s\]|s/it\]")  # tqdm bars: left out of a failed benchmark's output tail
OUT_DIR = "{out}"  # placeholder in argument lists: the run's scratch folder under --out


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    quick: list[str]  # arguments at small sizes (a couple of minutes for all on a 2-core CPU)
    real: list[str]  # arguments at real sizes (for a GPU)
    weights: tuple[float, float]  # shares of the budget: (quick, real sizes)
    device_option: bool = False  # the script takes --device
    notes: list[str] = field(default_factory=list)


BENCHMARKS = [
    Benchmark(
        "fast_sae_step",
        "bench_fast_sae_step.py",
        ["--configs", "128x2048x32", "--steps", "2", "--warmup", "1"],
        ["--configs", "2048x16384x50", "4096x65536x160", "--steps", "5", "--warmup", "2"],
        weights=(1.5, 4),
        device_option=True,
    ),
    Benchmark(
        "suite_training",
        "bench_suite_training.py",
        ["--tokens", "4k", "--layers", "0", "--sites", "resid_post", "mlp_out"],
        ["--random-widths", "Qwen/Qwen3-0.6B", "--tokens", "100k", "--fast"],
        weights=(2, 2),
        device_option=True,
    ),
    Benchmark(
        "suite_eval",
        "bench_suite_eval.py",
        ["--generated", "--layers", "1", "--d-model", "64", "--batches", "1", "--batch-size", "4"]
        + ["--context-size", "64", "--repeats", "1"],
        ["--real-width", "--batches", "2", "--max-saes", "3", "--repeats", "1"],
        weights=(1, 2),
    ),
    Benchmark(
        "dashboards",
        "bench_dashboards.py",
        ["--d-model", "128", "--width", "1024", "--k", "16", "--prompts", "8", "--context", "32", "--threads", "1"],
        [],
        weights=(1, 2),
        device_option=True,
    ),
    Benchmark(
        "distributed",
        "bench_distributed.py",
        ["--tokens", "2k", "--layers", "0", "--sites", "resid_post", "mlp_out", "--no-agreement"],
        ["--tokens", "20k", "--layers", "0", "--sites", "resid_post", "mlp_out"],
        weights=(3, 1),
        notes=["torch.distributed with gloo: CPU processes by design"],
    ),
    Benchmark(
        "side_by_side",
        "bench_side_by_side.py",
        ["--modes", "configured", "--steps", "2", "--batch", "2", "--context", "32"],
        ["--modes", "default", "configured", "--steps", "10"],
        weights=(2, 0.5),
        notes=["CPU threading of two jobs on one machine: CPU by design"],
    ),
    Benchmark(
        "dp_quality",
        "bench_dp_quality.py",
        ["--tokens", "4k", "--seeds", "2", "--recipes", "paper", "--sites", "resid_post", "--eval-batches", "1"],
        ["--tokens", "200k", "--seeds", "3"],
        weights=(2, 1),
        notes=["data parallelism's held-out quality against one process: CPU processes by design"],
    ),
    Benchmark("cli_startup", "bench_cli_startup.py", ["--repeats", "1", "--warmup", "0"], ["--repeats", "3"], (1, 0.5)),
    Benchmark(
        "compare_architectures",
        "compare_architectures.py",
        ["--no-bench", "--tokens", "4k", "--architectures", "topk", "--sparsities", "topk=16,32"]
        + ["--out", f"{OUT_DIR}/compare_architectures"],
        ["--no-bench", "--tokens", "50k", "--architectures", "topk", "jumprelu", "--out", f"{OUT_DIR}/compare"],
        weights=(2, 1),
        notes=["an architecture comparison on the organism (quality, not speed)"],
    ),
]
NAMES = [b.name for b in BENCHMARKS]


def cuda_available() -> bool:
    import torch  # lazy: only `--device cuda` needs torch; the driver itself stays light

    return torch.cuda.is_available()


def scrubbed(text: str, out: Path) -> str:
    """Output with this machine's paths replaced (what is written must not name local folders)."""
    for path, label in ((str(out.resolve()), "<out>"), (str(HERE.parent), "<repo>"), (str(Path.home()), "~")):
        text = text.replace(path, label)
    return re.sub(r"(/tmp|/var|/private)/\S+", "<tmp>", text)


def run_one(bench: Benchmark, args: argparse.Namespace, budget_s: float, scratch: Path) -> dict:
    """Run one benchmark script in a fresh process (its own session, so a timeout stops its workers too)."""
    argv = [a.replace(OUT_DIR, str(scratch)) for a in (bench.quick if args.quick else bench.real)]
    device = args.device if bench.device_option else "cpu"
    if bench.device_option:
        argv += ["--device", args.device]
    shown = [a.replace(str(scratch), "<out>/work") for a in argv]
    record: dict = {
        "script": f"benchmarks/{bench.script}",
        "command": " ".join(["python", f"benchmarks/{bench.script}", *shown]),
        "device": device,
        "budget_s": round(budget_s, 1),
        "notes": list(bench.notes),
    }
    if args.device != "cpu" and not bench.device_option:
        record["notes"].append(f"ran on CPU (the script has no --device; asked for {args.device})")
    json_path = scratch / f"{bench.name}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / bench.script), *argv, "--json", str(json_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=max(budget_s, 1.0))
        record["status"] = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this driver started for the benchmark
        output, _ = proc.communicate()
        record["status"] = f"timed out after {budget_s:.0f} s"
    record["seconds"] = round(time.perf_counter() - start, 1)
    if json_path.is_file():
        written = json.loads(json_path.read_text())
        record["tables"] = written.pop("tables", {})
        written.pop("benchmark", None)
        record.update({k: scrubbed(v, args.out) if isinstance(v, str) else v for k, v in written.items()})
    else:
        record["tables"] = {}
    if record["status"] != "ok":
        lines = [line for line in re.split(r"[\r\n]+", output or "") if line.strip() and not PROGRESS.search(line)]
        record["output_tail"] = scrubbed("\n".join(lines[-30:]), args.out)
    return record


def markdown(report: dict) -> str:
    meta = report["run"]
    lines = [
        "# Benchmark results (benchmarks/run_all.py)",
        "",
        f"{meta['mode']} run on {meta['device']}, {meta['finished_utc']} UTC, budget {meta['budget_s']:.0f} s, "
        f"{meta['seconds']:.0f} s in all; load average {meta['load_average_start']} at the start, "
        f"{meta['load_average_end']} at the end ({meta['cores']} cores).",
        "",
    ]
    overview = [
        {
            "benchmark": name,
            "device": r["device"],
            "status": r["status"],
            "seconds": r["seconds"],
            "budget_s": r["budget_s"],
        }
        for name, r in report["benchmarks"].items()
    ]
    lines += [tabulate(overview, headers="keys", tablefmt="github"), ""]
    for name, r in report["benchmarks"].items():
        lines += [f"## {name}", "", f"`{r['command']}`", ""]
        for key in ("header", "summary"):
            if r.get(key):
                lines += [str(r[key]), ""]
        lines += [f"- {note}" for note in r["notes"]] + ([""] if r["notes"] else [])
        for table_name, rows in r["tables"].items():
            if rows:
                lines += [
                    f"**{table_name}**",
                    "",
                    tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g"),
                    "",
                ]
        if r.get("output_tail"):
            lines += ["```", r["output_tail"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a couple of minutes on a CPU)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]; passed to scripts that take it")
    parser.add_argument("--budget-s", type=float, default=None, help="total seconds (default 600 quick, 3600 real)")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"a subset of: {', '.join(NAMES)}")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="folder for the results")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not cuda_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    budget = args.budget_s if args.budget_s is not None else (600.0 if args.quick else 3600.0)
    chosen = [b for b in BENCHMARKS if args.only is None or b.name in args.only]
    load_start = os.getloadavg()
    start = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="work.", dir=_created(args.out)) as scratch:
        for i, bench in enumerate(tqdm(chosen, desc="benchmarks")):
            left = budget - (time.perf_counter() - start)
            weight = [b.weights[0 if args.quick else 1] for b in chosen]
            share = left * weight[i] / sum(weight[i:])
            results[bench.name] = record = run_one(bench, args, share, Path(scratch))
            tqdm.write(f"{bench.name}: {record['status']} in {record['seconds']:.1f} s (budget {share:.0f} s)")
    report = {
        "run": {
            "mode": "quick" if args.quick else "real sizes",
            "device": args.device,
            "budget_s": budget,
            "seconds": round(time.perf_counter() - start, 1),
            "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "load_average_start": [round(v, 2) for v in load_start],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "benchmarks": results,
    }
    atomic_write_json(args.out / "results.json", report, sort_keys=False)
    atomic_write_text(args.out / "results.md", markdown(report) + "\n")
    failed = [name for name, r in results.items() if r["status"] != "ok"]
    print(
        f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}" + (f"; not ok: {failed}" if failed else "")
    )
    return 1 if failed else 0


def _created(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


if __name__ == "__main__":
    sys.exit(main())

"""Compare SAE architectures on the model organism: TopK, BatchTopK, Matryoshka BatchTopK, JumpReLU, standard (L1).

For each architecture one suite (`qwen3-scope train --architecture ARCH`): one layer x resid_post / mlp_out / attn_out,
three sparsities each (a sparsity sweep: the suite's SAEs share their forward passes), the same tokens (same data,
seed and budget), the same widths (the organism suite's: 1,280 = 8 x d_model, attn_out 192). Then per suite:
SAEBench's own metrics through `qwen3-scope bench --suite DIR` in the SAEBench venv (optional), and the suite
evaluation `qwen3-scope eval` (L0, FVU, CE recovered, delta LM loss, dead latents; with the bench columns joined).
Writes `comparison.csv`, `comparison.md`, `l0_vs_fvu.png`, `l0_vs_ce.png` under --out.

    python benchmarks/compare_architectures.py --out runs/compare_architectures             # ~20 min on 2 busy cores
    python benchmarks/compare_architectures.py --no-bench --tokens 60k --architectures topk standard
    python benchmarks/compare_architectures.py --sparsities standard=1,3,10 jumprelu=12,24,48

Sparsities: k for the TopK family, target L0 for JumpReLU, L1 coefficients for standard (chosen so that its L0s land
in the TopK k range on the organism). Suites already trained under --out are reused (delete them to retrain).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from qwen3_scope.core.io import atomic_write_json, atomic_write_text  # noqa: E402
from qwen3_scope.evaluation.bench_env import create_venv  # noqa: E402
from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite  # noqa: E402
from qwen3_scope.naming import sparsity_variant  # noqa: E402
from qwen3_scope.training.config import ARCHITECTURE_SPARSITY, SuiteTrainingConfig, organism_suite_config  # noqa: E402
from qwen3_scope.training.suite import train_suite  # noqa: E402

SITES = ("resid_post", "mlp_out", "attn_out")
# k (TopK family), target L0 (JumpReLU), L1 coefficient (standard; from a calibration sweep on the organism at 150k
# tokens, L1 1 / 3 / 10 gave L0 45 / 18 / 10 at resid_post, 105 / 30 / 9 at mlp_out, 55 / 31 / 12 at attn_out, so
# 1 / 2 / 4 put L1's L0s in the k range)
SPARSITIES = {
    "topk": [16, 32, 64],
    "batchtopk": [16, 32, 64],
    "matryoshka_batchtopk": [16, 32, 64],
    "jumprelu": [16, 32, 64],
    "standard": [1.0, 2.0, 4.0],
}
NAMES = {
    "topk": "TopK",
    "batchtopk": "BatchTopK",
    "matryoshka_batchtopk": "Matryoshka BatchTopK",
    "jumprelu": "JumpReLU",
    "standard": "standard (L1)",
    "gated": "gated",
    "abstopk": "AbsTopK",
    "matching_pursuit": "matching pursuit",
}
# SAEBench evals and small sizes that run on the organism in minutes (tests/test_saebench.py uses smaller ones)
# absorption is left out: it first needs the model to spell (first-letter probes), and the organism cannot (measured:
# 0 of 26 probes reach F1 0.6, SAEBench needs 20), so it costs ~200 s per SAE to report "not measured"
BENCH_EVALS = ("sparse_probing", "scr", "tpp", "meta_structure")
BENCH_SIZES = [
    "--train-size", "100", "--test-size", "50", "--core-batches", "2", "--core-batch-size", "8", "--n-values", "1", "2",
    "5", "--probe-epochs", "2", "--absorption-probe-epochs", "2", "--absorption-max-k", "2", "--meta-train-steps", "50",
    "--meta-batch-size", "128", "--llm-batch-size", "32",
]  # fmt: skip


def parse_sparsities(items: list[str]) -> dict[str, list[float]]:
    out = dict(SPARSITIES)
    for item in items:
        arch, _, values = item.partition("=")
        if arch not in ARCHITECTURE_SPARSITY or not values:
            raise SystemExit(f"--sparsities takes ARCH=v1,v2,v3 with ARCH one of {', '.join(ARCHITECTURE_SPARSITY)}")
        out[arch] = [float(v) for v in values.split(",")]
    return out


def suite_config(arch: str, values: list[float], args: argparse.Namespace) -> SuiteTrainingConfig:
    """The organism suite's settings (widths, document-aligned windows, recipe), one layer, this architecture."""
    key = ARCHITECTURE_SPARSITY[arch]
    option = {"k": "k", "target_l0": "target_l0", "l1_coefficient": "l1_coefficient", "max_iterations": "k"}[key]
    sparsity: dict[str, float | None] = {"target_l0": None}  # not the organism suite's 32
    sparsity[option] = int(values[0]) if option == "k" else float(values[0])
    return organism_suite_config(
        architecture=arch,
        layers=[args.layer],
        sites=list(SITES),
        training_tokens=args.tokens,
        sparsities=[float(v) for v in values],
        sweep_layers=[args.layer],
        resample_sites=["attn_out"] if arch == "jumprelu" else None,  # the organism suite's JumpReLU setting
        out=str(args.out / arch),
        threads=args.threads,
        seed=args.seed,
        **sparsity,
    )


def train(arch: str, values: list[float], args: argparse.Namespace) -> Path:
    """Train the architecture's suite (or finish it: a suite already under --out is resumed, a finished one reused)."""
    cfg = suite_config(arch, values, args)
    resume = (Path(str(cfg.out)) / "manifest.json").is_file()
    return train_suite(cfg.replace(resume=resume), progress=True).suite_dir


def bench_ids(arch: str, values: list[float], args: argparse.Namespace) -> str:
    """Which SAEs SAEBench measures: --bench-ids, else the middle sparsity at resid_post (SAEBench's probes take ~30 s
    per SAE and eval on 2 busy cores, so benching all 45 SAEs would take hours)."""
    if args.bench_ids:
        return str(args.bench_ids)
    key = ARCHITECTURE_SPARSITY[arch]
    middle = values[len(values) // 2]
    if key == "l1_coefficient":
        variant = sparsity_variant(l1=middle)
    else:
        variant = sparsity_variant(target_l0=middle) if key == "target_l0" else sparsity_variant(k=int(middle))
    return f"resid_post/layer_{args.layer}/{variant}" if middle != values[0] else f"resid_post/layer_{args.layer}"


def bench(suite_dir: Path, out: Path, ids: str, args: argparse.Namespace) -> Path | None:
    """`qwen3-scope bench --suite DIR` in the SAEBench venv; None (with the reason printed) when it fails."""
    if (out / "bench.csv").is_file():
        return out
    python = create_venv()
    code = "import sys, qwen3_scope_cli; sys.exit(qwen3_scope_cli.main())"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    argv = [str(python), "-c", code, "bench", "--suite", str(suite_dir), "--ids", ids, "--out", str(out)]
    argv += ["--evals", *args.bench_evals, *BENCH_SIZES]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"bench of {suite_dir.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", file=sys.stderr)
        return None
    return out


def sparsity_setting(suite_dir: Path, sae_id: str) -> str:
    """The SAE's sparsity setting, from the training config SAELens saved beside it (runner_cfg.json)."""
    sae = json.loads((suite_dir / sae_id / "runner_cfg.json").read_text())["sae"]
    for key, label in (("k", "k"), ("target_l0", "target L0"), ("l1_coefficient", "L1"), ("max_iterations", "iters")):
        if sae.get(key) is not None:
            return f"{label} {sae[key]:g}"
    return ""


def plot(table: pd.DataFrame, y: str, label: str, path: Path) -> None:
    fig, axes = plt.subplots(1, len(SITES), figsize=(4.4 * len(SITES), 3.6), squeeze=False)
    for ax, site in zip(axes[0], SITES):
        rows = table[table["site"] == site]
        for arch, group in rows.groupby("architecture", sort=False):
            group = group.sort_values("l0")
            ax.plot(group["l0"], group[y], marker="o", ms=4, label=NAMES.get(arch, arch))
        ax.set_title(f"{site}, layer {int(rows['layer'].iloc[0]) if len(rows) else ''}", fontsize=10)
        ax.set_xlabel("L0 (active latents / token)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


COLUMNS = {
    "architecture": "architecture",
    "site": "site",
    "setting": "sparsity setting",
    "l0": "L0",
    "fvu": "FVU",
    "ce_loss_score": "CE recovered",
    "delta_lm_loss": "delta LM loss",
    "dead_fraction": "dead",
    "saebench_sparse_probing_top1": "probe top-1",
    "saebench_sparse_probing_top5": "probe top-5",
    "saebench_scr_top5": "SCR top-5",
    "saebench_tpp_top5": "TPP top-5",
    "saebench_meta_structure_fve": "meta FVE",
}


def markdown(table: pd.DataFrame) -> str:
    shown = table[[c for c in COLUMNS if c in table.columns]].copy()
    shown["architecture"] = shown["architecture"].map(lambda a: NAMES.get(a, a))
    shown = shown.rename(columns=COLUMNS)
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}")
    return shown.to_markdown(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/compare_architectures"))
    parser.add_argument("--architectures", nargs="*", default=list(SPARSITIES), choices=list(ARCHITECTURE_SPARSITY))
    parser.add_argument("--sparsities", nargs="*", default=[], help="ARCH=v1,v2,v3 (k, target L0 or L1 coefficient)")
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--tokens", default="100k", help="training tokens per SAE (default 100k)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bench", action=argparse.BooleanOptionalAction, default=True, help="run SAEBench's evals")
    parser.add_argument("--bench-evals", nargs="*", default=list(BENCH_EVALS))
    parser.add_argument(
        "--bench-ids", help="regex of the SAE ids to bench (default: the middle sparsity at resid_post)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write both tables to this JSON file")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    sparsities = parse_sparsities(args.sparsities)
    print(f"load average at start: {os.getloadavg()}")
    tables, timings = [], []
    for arch in args.architectures:
        start = time.perf_counter()
        suite_dir = train(arch, sparsities[arch], args)
        train_seconds = time.perf_counter() - start
        ids = bench_ids(arch, sparsities[arch], args)
        bench_dir = bench(suite_dir, args.out / f"bench-{arch}", ids, args) if args.bench else None
        bench_seconds = time.perf_counter() - start - train_seconds
        eval_start = time.perf_counter()
        config = SuiteEvalConfig(bench=str(bench_dir) if bench_dir else None)
        table = evaluate_suite(suite_dir=suite_dir, config=config).table
        table = table.rename(columns={"architecture": "saved_as"})  # SAELens' inference class (BatchTopK: jumprelu)
        table.insert(0, "architecture", arch)
        table.insert(3, "setting", [sparsity_setting(suite_dir, s) for s in table["sae_id"]])
        tables.append(table)
        timings.append(
            dict(
                architecture=arch,
                train_s=round(train_seconds, 1),
                bench_s=round(bench_seconds, 1),
                eval_s=round(time.perf_counter() - eval_start, 1),
            )
        )
        print(timings[-1], f"load average {os.getloadavg()}", flush=True)
    table = pd.concat(tables, ignore_index=True)
    table["site"] = pd.Categorical(table["site"], SITES)
    table = table.sort_values(["site", "architecture", "l0"]).reset_index(drop=True)
    table["site"] = table["site"].astype(str)
    table.to_csv(args.out / "comparison.csv", index=False)
    plot(table, "fvu", "FVU (1 - explained variance)", args.out / "l0_vs_fvu.png")
    plot(table, "ce_loss_score", "CE loss recovered", args.out / "l0_vs_ce.png")
    text = markdown(table)
    timing = pd.DataFrame(timings).to_markdown(index=False)
    atomic_write_text(args.out / "comparison.md", f"{text}\n\nSeconds (load average {os.getloadavg()}):\n\n{timing}\n")
    print(text)
    print(timing)
    if args.json is not None:
        shown = table[[c for c in COLUMNS if c in table.columns]]
        tables = {"architectures": json.loads(shown.to_json(orient="records")), "seconds": timings}
        atomic_write_json(args.json, {"benchmark": "compare_architectures", "tables": tables}, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the organism suite on 1 process x 2 threads against 2 torch.distributed processes x 1 thread.

Rows: the baseline (one process, two torch threads), group parallelism on 2 gloo ranks (whole groups per
rank, re-cut by the planner), and data parallelism on 2 ranks (every group shared, gradients all-reduced).
Columns: makespan (wall time of the whole job, process start-up included, and of training alone), each
rank's busy time (sum of its groups' training seconds), the measured imbalance (max / mean busy time)
against the planner's predicted imbalance, bytes each rank all-reduces per data-parallel step, and the
speed-up against the baseline. Two ranks share the machine's 2 cores with the baseline's 2 threads.
A last check measures the float32 agreement of data parallelism: 2 ranks against one process reading the
same 2 data shards (the same global batches).

    python benchmarks/bench_distributed.py [--tokens 20k] [--layers 0 1] [--sites resid_post mlp_out attn_out]
    python benchmarks/bench_distributed.py --tokens 2k --layers 0 --sites resid_post mlp_out --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch


def spawned(settings: dict, world: int, folder: Path) -> float:
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.distributed import spawn_local

    start = time.perf_counter()
    spawn_local(SuiteTrainingConfig(**settings), world, folder)
    return time.perf_counter() - start


def busy(manifest: dict, world: int) -> list[float]:
    """Each rank's training seconds (group records; data parallelism: every rank trains every group)."""
    parallel = manifest.get("parallel") or {}
    out = [0.0] * world
    for g in manifest["groups"]:
        if parallel.get("mode") == "data" or world == 1:
            for r in range(world):
                out[r] += g.get("seconds", 0.0)
        else:
            out[int(parallel["assignment"][str(g["index"])])] += g.get("seconds", 0.0)
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    manifest = json.loads((folder / "manifest.json").read_text())
    return {
        f"{s}:{k}": v for s in manifest["saes"] for k, v in load_file(folder / s / "sae_weights.safetensors").items()
    }


def main() -> None:
    from qwen3_scope.training.parsing import parse_tokens

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=parse_tokens, default=20_000, help="training tokens per SAE (default 20k)")
    parser.add_argument("--layers", nargs="*", help="default: every layer")
    parser.add_argument("--sites", nargs="*", default=None, help="default: the recipe's")
    parser.add_argument(
        "--agreement",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure data parallelism's float32 agreement with one process (3 more suite runs)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the tables to this JSON file")
    args = parser.parse_args()

    from qwen3_scope.core.io import atomic_write_json
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.parallel_plan import step_bytes
    from qwen3_scope.training.suite import train_suite

    folder = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    base = dict(model="organism", training_tokens=args.tokens, layers=args.layers, sites=args.sites)
    load = os.getloadavg()[0]
    rows = []

    start = time.perf_counter()
    one = train_suite(SuiteTrainingConfig(**base, out=str(folder / "one"), threads=2), progress=False)
    wall = time.perf_counter() - start
    b = busy(one.manifest, 1)
    rows.append(
        dict(
            run="1 process x 2 threads",
            mode="-",
            groups=len(one.plan.groups),
            makespan_s=wall,
            train_s=max(b),
            rank_busy_s=" ".join(f"{x:.1f}" for x in b),
            imbalance=1.0,
            predicted_imbalance=1.0,
            allreduce_mb_per_step=0.0,
        )
    )
    for mode in ("group", "data"):
        out = folder / mode
        wall = spawned({**base, "out": str(out), "threads": 1, "parallel": mode}, 2, folder)
        manifest = json.loads((out / "manifest.json").read_text())
        b = busy(manifest, 2)
        predicted = manifest["parallel"]["predicted_rank_seconds"]
        groups = [g for g in one.plan.groups]
        mb = max(step_bytes(g) for g in groups) / 1e6 if mode == "data" else 0.0
        rows.append(
            dict(
                run="2 processes x 1 thread",
                mode=mode,
                groups=len(manifest["groups"]),
                makespan_s=wall,
                train_s=max(b),
                rank_busy_s=" ".join(f"{x:.1f}" for x in b),
                imbalance=max(b) / (sum(b) / len(b)),
                predicted_imbalance=max(predicted) / (sum(predicted) / 2),
                allreduce_mb_per_step=mb,
            )
        )
    table = pd.DataFrame(rows)
    table["speedup_vs_1p"] = table["makespan_s"].iloc[0] / table["makespan_s"]
    print(
        f"organism suite {one.plan.suite.name}: {len(one.plan.suite.jobs)} SAEs, {args.tokens:,} tokens each "
        f"(load average {load:.2f} at the start)"
    )
    with pd.option_context("display.width", 220, "display.float_format", "{:.3g}".format):
        print(table.to_string(index=False))
    # float32 agreement of data parallelism on SAELens' own classes (the fast classes compute in bfloat16 on CPUs
    # that have it, so their runs agree only to bf16 rounding, amplified by Adam)
    agreement = []
    exact = {**base, "fast": False, "parallel": "data", "threads": 1}
    if args.agreement:
        spawned({**exact, "out": str(folder / "data_2r")}, 2, folder)
        train_suite(SuiteTrainingConfig(**exact, out=str(folder / "data_1p"), data_shards=2), progress=False)
    pairs = {"SAELens classes": ("data_1p", "data_2r"), "fast classes (bf16 compute)": ("data_one", "data")}
    for label, (a, b) in pairs.items() if args.agreement else []:
        if label.startswith("fast"):
            data_one = SuiteTrainingConfig(
                **base, out=str(folder / "data_one"), threads=1, parallel="data", data_shards=2
            )
            train_suite(data_one, progress=False)
        w1, w2 = weights(folder / a), weights(folder / b)
        diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
        rel = max(((w1[k] - w2[k]).norm() / w1[k].norm().clamp_min(1e-30)).item() for k in w1)
        print(
            f"data parallelism, float32, {label}: 2 ranks vs 1 process on the same global batches: "
            f"max |diff| {diff:.3g}, max relative (Frobenius) diff {rel:.3g}"
        )
        agreement.append({"classes": label, "max_abs_diff": diff, "max_relative_diff": rel})
    print(
        "(bit-identity of group parallelism with a 1-process run at the same thread count: tests/test_distributed.py)"
    )
    if args.json is not None:
        header = (
            f"organism suite {one.plan.suite.name}: {len(one.plan.suite.jobs)} SAEs, {args.tokens:,} tokens each "
            f"(load average {load:.2f} at the start)"
        )
        tables = {"runs": json.loads(table.to_json(orient="records")), "data_parallel_agreement": agreement}
        atomic_write_json(
            args.json, {"benchmark": "bench_distributed", "header": header, "tables": tables}, sort_keys=False
        )


if __name__ == "__main__":
    main()

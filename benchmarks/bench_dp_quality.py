"""Does data parallelism with the fast classes cost quality? Issue 28, part 5.

The fast training classes compute in bfloat16 where the device runs it natively, so a data-parallel run agrees with
one process only to bf16 rounding, which Adam amplifies over the steps (bench_distributed.py prints how far the
weights drift). Drift is not a loss of quality by itself; this script measures quality on held-out tokens.

Per recipe (JumpReLU `paper`, TopK `qwen-scope`), the same suite is trained on the same tokens as
  one     one process, at --seeds seeds (42, 43, ...: another initialisation and data order each)
  dp2     2 torch.distributed ranks, data parallelism, at the same seeds
  shards  one process reading the 2 data shards of the 2-rank run (exactly its global batches), seed 42
and each run is evaluated on the same held-out tokens (`evaluate_suite`: EV, MSE, L0, dead fraction, CE loss
recovered on predicted positions). Printed per SAE and metric: the mean and standard deviation over seeds of `one`
and of `dp2`, and their difference in units of the larger standard deviation (`gap_in_sd`; within run-to-run noise
when it is below ~2). `shards` against `dp2` at seed 42 separates the causes of a gap: the same global batches, so
any difference is distributed arithmetic (in float32 compute it is ~1e-7 relative: rounding; in bfloat16 compute
Adam amplifies the rounding to a different trajectory, which this measures the quality of).

    python benchmarks/bench_dp_quality.py                               # 300k tokens, layer 2, resid_post + mlp_out
    python benchmarks/bench_dp_quality.py --tokens 50k --recipes qwen-scope --eval-batches 2 --json dp.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch
from tqdm.auto import tqdm

METRICS = ("explained_variance", "mse", "l0", "dead_fraction", "ce_loss_score")
SEED = 42  # the training config's default seed


def parse_tokens(text: str) -> int:
    text = text.lower().replace("_", "")
    scale = 1000 if text.endswith("k") else 1
    return int(float(text.rstrip("k")) * scale)


def train(arm: str, seed: int, settings: dict, folder: Path) -> tuple[Path, float]:
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.distributed import spawn_local
    from qwen3_scope.training.suite import train_suite

    out = folder / f"{arm}_{seed}"
    config = {**settings, "out": str(out), "seed": seed}
    start = time.perf_counter()
    if arm == "dp2":
        spawn_local(SuiteTrainingConfig(**config, parallel="data"), 2, folder)
    elif arm == "shards":
        train_suite(SuiteTrainingConfig(**config, parallel="data", data_shards=2), progress=False)
    else:
        train_suite(SuiteTrainingConfig(**config), progress=False)
    return out, time.perf_counter() - start


def evaluate(suite: Path, model, batches: int) -> pd.DataFrame:
    from qwen3_scope.evaluation.config import SuiteEvalConfig
    from qwen3_scope.evaluation.suite_eval import entries_from_directory, evaluate_suite

    entries = entries_from_directory(suite)
    config = SuiteEvalConfig(n_batches=batches, progress=False)
    return evaluate_suite(entries, model=model, config=config).table.set_index("sae_id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=parse_tokens, default=300_000, help="training tokens per SAE (default 300k)")
    parser.add_argument("--layers", nargs="+", type=int, default=[2])
    parser.add_argument("--sites", nargs="+", default=["resid_post", "mlp_out"])
    parser.add_argument("--recipes", nargs="+", default=["paper", "qwen-scope"], choices=["paper", "qwen-scope"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the one-process and 2-rank runs (>= 2)")
    parser.add_argument("--eval-batches", type=int, default=8, help="held-out batches of 8 x 128 tokens (default 8)")
    parser.add_argument("--json", type=Path, default=None, help="also write the tables to this JSON file")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be >= 2: the noise is the spread over seeds")

    from qwen3_scope.core.io import atomic_write_json
    from qwen3_scope.core.threads import available_cores
    from qwen3_scope.model.loading import load_model
    from qwen3_scope.saes.sparse_ops import bf16_matmul_supported

    threads = available_cores()
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    bf16 = bf16_matmul_supported("cpu")
    print(
        f"{args.tokens:,} tokens per SAE, layers {args.layers}, sites {args.sites}; fast classes compute in "
        f"{'bfloat16 (native here)' if bf16 else 'float32 (no native bf16 here)'}; load average {load:.2f}"
    )
    model = load_model("organism", backend="hooked", device="cpu")
    runs_by_arm = [("shards", SEED)] + [(arm, SEED + i) for i in range(args.seeds) for arm in ("one", "dp2")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            settings = dict(
                model="organism",
                recipe=recipe,
                layers=args.layers,
                sites=args.sites,
                training_tokens=args.tokens,
                threads=1,
                fast=True,
            )
            for arm, seed in tqdm(runs_by_arm, desc=f"{recipe} runs"):
                suite, seconds = train(arm, seed, settings, Path(tmp) / recipe)
                table = evaluate(suite, model, args.eval_batches)
                for sae_id, row in table.iterrows():
                    rows.append(
                        {"recipe": recipe, "arm": arm, "seed": seed, "sae_id": sae_id, "train_s": seconds}
                        | {m: row[m] for m in METRICS}
                    )
    runs = pd.DataFrame(rows)
    gaps = []
    for (recipe, sae_id), group in runs.groupby(["recipe", "sae_id"], sort=False):
        for metric in METRICS:
            one, dp2 = (group[group["arm"] == arm][metric] for arm in ("one", "dp2"))
            shards = group[group["arm"] == "shards"][metric].iloc[0]
            dp2_same_seed = group[(group["arm"] == "dp2") & (group["seed"] == SEED)][metric].iloc[0]
            sd = max(one.std(), dp2.std())
            gaps.append(
                {
                    "recipe": recipe,
                    "sae_id": sae_id,
                    "metric": metric,
                    "one_mean": one.mean(),
                    "one_sd": one.std(),
                    "dp2_mean": dp2.mean(),
                    "dp2_sd": dp2.std(),
                    "gap_in_sd": abs(dp2.mean() - one.mean()) / sd if sd > 0 else float("nan"),
                    "shards_seed42": shards,
                    "dp2_seed42": dp2_same_seed,
                }
            )
    gap_table = pd.DataFrame(gaps)
    pd.set_option("display.width", 200)
    print("\nHeld-out quality of every run")
    print(runs.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nOne process against 2 data-parallel ranks, mean and sd over {args.seeds} seeds (gap_in_sd < 2: noise)")
    print(gap_table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    measured = gap_table.dropna(subset=["gap_in_sd"])
    within = float((measured["gap_in_sd"] < 2).mean())
    print(f"\n{within:.0%} of (SAE, metric) pairs have the 2-rank mean within 2 sd of the one-process mean")
    if args.json is not None:
        header = (
            f"organism, {args.tokens:,} tokens per SAE, layers {args.layers}, sites {args.sites}, {args.seeds} seeds, "
            f"bf16 native: {bf16}, load average {load:.2f} at the start"
        )
        tables = {"runs": runs.to_dict(orient="records"), "gaps": gap_table.to_dict(orient="records")}
        summary = f"{within:.0%} of (SAE, metric) pairs have the 2-rank mean within 2 sd of the one-process mean"
        atomic_write_json(
            args.json,
            {"benchmark": "bench_dp_quality", "header": header, "summary": summary, "tables": tables},
            sort_keys=False,
        )


if __name__ == "__main__":
    main()

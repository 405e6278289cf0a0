"""Benchmark: every layer x site SAE of the organism trained in shared forward passes vs one SAELens run each.

Both arms train the same SAEs (same recipe configs, same tokens, same prepared chat data, same model
object) with SAELens' own runners: MultiSAETrainingRunner (one forward pass feeds every SAE) against one
LanguageModelSAETrainingRunner per SAE. A third row runs `qwen3_scope.training.suite.train_suite`
(the shared pass plus segmented checkpoints, held-out evaluation and SAELens-layout output) to show
what the suite machinery costs on top. Prints a pandas table with wall time, tokens/s and the ratio.

    python benchmarks/bench_suite_training.py [--model organism] [--recipe paper] [--tokens 20k] [--threads 1]
    python benchmarks/bench_suite_training.py --random-widths Qwen/Qwen3-0.6B --device cuda --fast --json results.json
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import pandas as pd  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    from qwen3_scope.training.cli import parse_layers, parse_tokens

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--recipe", default="paper")
    parser.add_argument("--tokens", type=parse_tokens, default=20_000, help="training tokens per SAE (default 20k)")
    parser.add_argument("--layers", nargs="*", help="default: every layer")
    parser.add_argument("--sites", nargs="*", default=["resid_post", "mlp_out", "attn_out"])
    parser.add_argument("--fast", action="store_true", help="qwen3-scope's fast training SAE classes in every arm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument(
        "--random-widths",
        metavar="MODEL",
        help="train on a random-weight Qwen3 at this model's widths (2 layers), e.g. Qwen/Qwen3-0.6B, not --model",
    )
    parser.add_argument("--device", default=None, help="device of the model and SAEs (default: cuda when available)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    parser.add_argument(
        "--skip-single",
        action="store_true",
        help="skip the one-run-per-SAE arm (the longest): only the shared forward and train_suite, whose ratio is the "
        "suite machinery's overhead",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sae_lens import LanguageModelSAETrainingRunner, MultiSAETrainingRunner

    from qwen3_scope.core.io import atomic_write_json
    from qwen3_scope.data import prepare_data
    from qwen3_scope.model.chat import special_token_ids
    from qwen3_scope.model.loading import load_model
    from qwen3_scope.model.random_model import build_random_qwen3
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.recipes import build_suite
    from qwen3_scope.training.suite import _quiet_sae_lens, evaluate_saes, train_suite

    if args.random_widths:
        model_dir = tempfile.mkdtemp(prefix="bench_suite_model_")
        atexit.register(shutil.rmtree, model_dir, ignore_errors=True)  # ~0.7 GB at Qwen3-0.6B widths
        args.model = str(build_random_qwen3(model_dir, args.random_widths))
    config = SuiteTrainingConfig(
        model=args.model,
        device=args.device,
        recipe=args.recipe,
        layers=parse_layers(args.layers),
        sites=args.sites,
        training_tokens=args.tokens,
        fast=args.fast,
    )
    model = load_model(args.model, device=config.resolved_device)
    suite = build_suite(config, model.qwen3_spec, special_token_ids=special_token_ids(model.tokenizer))
    runner = suite.runner_kwargs
    data_dir = tempfile.mkdtemp(prefix="bench_suite_data_")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    data = prepare_data(
        model.tokenizer,
        int(args.tokens * 1.6) + 16 * runner["n_batches_in_buffer"] * runner["context_size"],
        4 * runner["store_batch_size_prompts"] * runner["context_size"],
        data_dir,
        context_size=runner["context_size"],
    )
    hooks = {j.sae_id: j.hook_name for j in suite.jobs}
    print(
        f"{len(suite.jobs)} SAEs of {suite.name} ({suite.jobs[0].architecture}, d_sae {suite.jobs[0].d_sae}), "
        f"{args.tokens:,} tokens each, {torch.get_num_threads()} thread(s)"
    )

    rows = []

    def record(arm: str, runs: int, seconds: float, saes: dict) -> None:
        ev = evaluate_saes(model, saes, hooks, data.heldout, runner, suite.outlier_norm_factor)
        rows.append(
            dict(
                arm=arm,
                runner_runs=runs,
                seconds=round(seconds, 1),
                tokens_per_s=round(args.tokens / seconds, 1),
                sae_tokens_per_s=round(args.tokens * len(suite.jobs) / seconds, 1),
                mean_variance_explained=round(sum(m["variance_explained"] for m in ev.values()) / len(ev), 4),
            )
        )
        print(rows[-1], flush=True)

    with _quiet_sae_lens():
        torch.manual_seed(0)
        start = time.perf_counter()
        shared = MultiSAETrainingRunner(
            suite.multi_config(suite.jobs, dataset_path="prepared", output_path=None),
            override_dataset=data.train,
            override_model=model,
        ).run()
        record("shared forward (MultiSAETrainingRunner)", 1, time.perf_counter() - start, shared)

        if not args.skip_single:
            singles, start = {}, time.perf_counter()
            for job in suite.jobs:
                torch.manual_seed(0)
                cfg = suite.runner_config(job, dataset_path="prepared", output_path=None)
                singles[job.sae_id] = LanguageModelSAETrainingRunner(
                    cfg, override_dataset=data.train, override_model=model
                ).run()
            record("one LanguageModelSAETrainingRunner per SAE", len(suite.jobs), time.perf_counter() - start, singles)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_suite(
            config.replace(out=str(Path(tmp) / "suite"), max_saes_per_group=len(suite.jobs)),
            spec=model.qwen3_spec,
            loaded_model=model,
            progress=False,
        )
        seconds = time.perf_counter() - start
        from sae_lens import SAE

        loaded = {sid: SAE.load_from_disk(str(result.suite_dir / sid)) for sid in hooks}
        record("qwen3-scope train_suite (shared + checkpoints + eval + save)", len(result.plan.groups), seconds, loaded)
        groups = result.manifest["groups"]
        phases = {k: sum(g.get(k, 0.0) for g in groups) for k in ("seconds", "eval_seconds", "save_seconds")}
        phases = {
            "training (passes, steps, checkpoints)": phases["seconds"],
            "held-out evaluation": phases["eval_seconds"],
            "saving": phases["save_seconds"],
            "data preparation and the rest": seconds - sum(phases.values()),
        }

    table = pd.DataFrame(rows)
    shared_s, suite_s = table.iloc[0]["seconds"], table.iloc[-1]["seconds"]
    summary = f"train_suite costs {suite_s / shared_s:.2f}x its shared forward passes and steps (target <= 1.1x)."
    if not args.skip_single:
        base = table.loc[1, "seconds"]
        table["speedup_vs_one_run_per_sae"] = (base / table["seconds"]).round(2)
        summary = (
            f"shared forward passes are {base / shared_s:.2f}x faster than one SAELens run per SAE "
            f"({len(suite.jobs)} SAEs, same tokens); " + summary
        )
    print("\n" + table.to_string(index=False))
    print("\ntrain_suite's time: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    summary += " Where its time went: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()) + "."
    print(f"\n{summary}")
    if args.json is not None:
        header = (
            f"{len(suite.jobs)} SAEs of {suite.name} ({suite.jobs[0].architecture}, d_sae {suite.jobs[0].d_sae}), "
            f"{args.tokens:,} tokens each, device {config.resolved_device}, {torch.get_num_threads()} thread(s)"
        )
        atomic_write_json(
            args.json,
            {
                "benchmark": "bench_suite_training",
                "header": header,
                "summary": summary,
                "tables": {"arms": json.loads(table.to_json(orient="records"))},
            },
            sort_keys=False,
        )


if __name__ == "__main__":
    main()

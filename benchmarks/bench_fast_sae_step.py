"""Training-step throughput: SAELens' stock TopK (or JumpReLU) training SAE vs qwen3-scope's fast classes.

Everything runs in one process on the same inputs and the same initial weights. A step is SAELens'
`SAETrainer.step` (forward, loss, backward, grad clipping, Adam, dead-latent bookkeeping), batch 4096
tokens by default. Printed: tokens/s, ratio vs the stock fp32 step, the share of the bf16 encoder-GEMM
floor (one bf16 (tokens x d_in) @ (d_in x d_sae) matmul / step time), and where the fast step spends time.

    python benchmarks/bench_fast_sae_step.py                     # all default sizes
    python benchmarks/bench_fast_sae_step.py --configs 2048x16384x50 --steps 2 --warmup 1
    python benchmarks/bench_fast_sae_step.py --arch jumprelu --dead-frac 0.05
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from typing import Any

import pandas as pd
import torch
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer
from tqdm.auto import tqdm

import qwen3_scope  # noqa: F401  (registers the fast classes)
from qwen3_scope.saes.fast_saes import (
    FastJumpReLUTrainingSAE,
    FastJumpReLUTrainingSAEConfig,
    FastTopKTrainingSAE,
    FastTopKTrainingSAEConfig,
    enable_fused_adam,
)
from qwen3_scope.saes.sparse_ops import bf16_matmul_supported

DEFAULT_CONFIGS = ["2048x16384x50", "2048x32768x50", "4096x65536x160", "128x2048x32"]
DEAD_WINDOW = 1000
PHASES = {
    "fast_sae.encoder_gemm": "encoder GEMM (+weight casts)",
    "fast_sae.select": "top-k / pair selection",
    "fast_sae.sparse_forward": "sparse decode + losses",
    "Optimizer.step#Adam.step": "optimizer (fused Adam)",
}


def parse_config(text: str) -> tuple[int, int, int]:
    try:
        d_in, d_sae, k = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise SystemExit(f"--configs entries look like 2048x16384x50 (d_in x d_sae x k), got {text!r}") from err
    return d_in, d_sae, k


def build_sae(variant: str, arch: str, d_in: int, d_sae: int, k: int) -> Any:
    common: dict[str, Any] = {"d_in": d_in, "d_sae": d_sae}
    if arch == "topk":
        common["k"] = k
        if variant == "stock":
            return TopKTrainingSAE(TopKTrainingSAEConfig(**common))
        return FastTopKTrainingSAE(FastTopKTrainingSAEConfig(**common, compute_dtype=variant.split("_")[1]))
    common["l0_coefficient"] = 1e-3
    if variant == "stock":
        return JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**common))
    return FastJumpReLUTrainingSAE(FastJumpReLUTrainingSAEConfig(**common, compute_dtype=variant.split("_")[1]))


def calibrate_thresholds(sae: Any, x: torch.Tensor, k: int) -> None:
    """JumpReLU thresholds at each latent's (1 - k/d_sae) quantile on the batch, so that L0 is about k."""
    with torch.no_grad():
        hidden = sae.process_sae_in(x) @ sae.W_enc + sae.b_enc
        rank = max(1, round(x.shape[0] * (1 - k / sae.cfg.d_sae)))
        sae.threshold.copy_(hidden.kthvalue(rank, dim=0).values.clamp_min(1e-3))


def initialized_sae(
    variant: str, arch: str, d_in: int, d_sae: int, k: int, x: torch.Tensor, initial: dict[str, torch.Tensor]
) -> Any:
    """A fresh SAE with the config's shared initial weights (set from the first SAE built)."""
    torch.manual_seed(1)
    sae = build_sae(variant, arch, d_in, d_sae, k)
    if not initial:
        if arch == "jumprelu":
            calibrate_thresholds(sae, x, k)
        initial.update({name: t.detach().clone() for name, t in sae.state_dict().items()})
    sae.load_state_dict(initial)
    return sae


def make_trainer(sae: Any, batch: int) -> SAETrainer:
    cfg = SAETrainerConfig(
        total_training_samples=batch * 10**6,
        train_batch_size_samples=batch,
        lr=1e-4,
        lr_end=1e-4,
        dead_feature_window=DEAD_WINDOW,
        feature_sampling_window=10**9,
    )
    trainer = SAETrainer(cfg, sae, data_provider=iter(()))
    enable_fused_adam(trainer)  # what qwen3-scope's suite trainer does (a no-op for stock SAEs)
    return trainer


def run_steps(trainer: SAETrainer, x: torch.Tensor, n: int, dead: torch.Tensor | None) -> list[float]:
    times = []
    for _ in range(n):
        if dead is not None:  # keep the same latents dead every step, so AuxK always runs on them
            trainer.n_forward_passes_since_fired[dead] = DEAD_WINDOW + 1
        start = time.perf_counter()
        trainer.step(x)
        trainer.n_training_steps += 1
        times.append(time.perf_counter() - start)
    return times


class BF16Gemm:
    """The floor: one bf16 (tokens x d_in) @ (d_in x d_sae) matmul, in the layout the fast class uses."""

    def __init__(self, batch: int, d_in: int, d_sae: int) -> None:
        self.x = torch.randn(batch, d_in).bfloat16()
        self.w = torch.randn(d_sae, d_in).bfloat16()
        self.out = torch.empty(batch, d_sae, dtype=torch.bfloat16)
        self.time()

    def time(self) -> float:
        start = time.perf_counter()
        torch.mm(self.x, self.w.t(), out=self.out)
        return time.perf_counter() - start


def memory_groups(
    variants: list[str],
    batch: int,
    d_in: int,
    d_sae: int,
    rows: list[dict[str, Any]],
    config: str,
    budget: float | None,
) -> list[list[str]]:
    """Variants that fit in memory together run interleaved; a variant that fits nowhere is skipped."""
    budget = 0.85 * mem_available_gib() if budget is None else budget
    groups: list[list[str]] = []
    used = budget
    for variant in variants:
        need = estimated_gib(variant, batch, d_in, d_sae)
        if need > budget:
            rows.append({"config": config, "variant": variant, "note": f"skipped: needs ~{need:.0f} GiB"})
        elif used + need > budget:
            groups.append([variant])
            used = need
        else:
            groups[-1].append(variant)
            used += need
    return groups


def timed_rounds(
    runs: dict[str, SAETrainer],
    x: torch.Tensor,
    dead: torch.Tensor | None,
    steps: int,
    floor_gemm: BF16Gemm,
    times: dict[str, list[float]],
    floors: list[float],
) -> None:
    """Rounds interleave the variants (and the floor GEMM), so slow and fast periods of a shared machine
    hit all of them alike."""
    for _ in tqdm(range(steps), desc="+".join(runs), leave=False):
        floors.append(floor_gemm.time())
        for variant, trainer in runs.items():
            times.setdefault(variant, []).extend(run_steps(trainer, x, 1, dead))


def breakdown(trainer: SAETrainer, x: torch.Tensor, dead: torch.Tensor | None) -> dict[str, float]:
    """Seconds per phase of one profiled fast step (top-level events of the main thread)."""
    from torch.profiler import ProfilerActivity, profile

    if dead is not None:
        trainer.n_forward_passes_since_fired[dead] = DEAD_WINDOW + 1
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        trainer.step(x)
        total = time.perf_counter() - start
    trainer.n_training_steps += 1
    main = [e for e in prof.events() if e.cpu_parent is None]
    thread = max(main, key=lambda e: e.time_range.elapsed_us()).thread if main else None
    phases: dict[str, float] = {name: 0.0 for name in [*PHASES.values(), "backward (sparse kernels)"]}
    for event in main:
        if event.thread != thread:
            continue
        seconds = event.time_range.elapsed_us() / 1e6
        if event.name in PHASES:
            phases[PHASES[event.name]] += seconds
        elif event.name.startswith("autograd::engine::evaluate_function"):
            phases["backward (sparse kernels)"] += seconds
    phases["other (loss, clip, trainer bookkeeping)"] = max(total - sum(phases.values()), 0.0)
    phases["total"] = total
    return phases


def peak_rss_gib() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def mem_available_gib() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def estimated_gib(variant: str, batch: int, d_in: int, d_sae: int) -> float:
    weights = 32 * d_in * d_sae  # W_enc + W_dec: fp32 param, grad, Adam m and v
    # (tokens, d_sae) fp32 temporaries alive at the peak; stock measured ~8 at 2048x16384 (3.5 GiB peak)
    per_token = 10 * 4 * d_sae if variant == "stock" else 6 * 4 * d_sae
    return (weights + batch * per_token) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="d_in x d_sae x k entries")
    parser.add_argument("--arch", choices=["topk", "jumprelu"], default="topk")
    parser.add_argument("--batch", type=int, default=4096, help="tokens per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    parser.add_argument("--dead-frac", type=float, default=0.0, help="share of latents held dead (AuxK runs)")
    parser.add_argument("--variants", nargs="+", default=["stock", "fast_float32", "fast_auto"])
    parser.add_argument(
        "--memory-budget-gib",
        type=float,
        default=None,
        help="memory for the variants run together (default 85%% of MemAvailable)",
    )
    args = parser.parse_args()
    if "stock" not in args.variants:
        raise SystemExit("--variants must include 'stock': ratios are measured against it")

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16 matmul: {bf16_matmul_supported('cpu')}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    rows, phase_rows = [], []
    for text in tqdm(args.configs, desc="configs"):
        d_in, d_sae, k = parse_config(text)
        torch.manual_seed(0)
        x = torch.randn(args.batch, d_in)
        n_dead = int(args.dead_frac * d_sae)
        dead = torch.randperm(d_sae)[:n_dead] if n_dead else None
        floor_gemm = BF16Gemm(args.batch, d_in, d_sae)
        initial: dict[str, torch.Tensor] = {}
        times: dict[str, list[float]] = {}
        floors: list[float] = []
        for group in memory_groups(args.variants, args.batch, d_in, d_sae, rows, text, args.memory_budget_gib):
            runs = {}
            for variant in group:
                runs[variant] = make_trainer(
                    initialized_sae(variant, args.arch, d_in, d_sae, k, x, initial), args.batch
                )
                run_steps(runs[variant], x, args.warmup, dead)
            timed_rounds(runs, x, dead, args.steps, floor_gemm, times, floors)
            last = group[-1]
            if last == args.variants[-1] and last != "stock":
                for phase, seconds in breakdown(runs[last], x, dead).items():
                    phase_rows.append({"config": text, "variant": last, "phase": phase, "ms": 1e3 * seconds})
            del runs
            gc.collect()
        floor = statistics.median(floors) if floors else float("nan")
        stock_time = statistics.median(times["stock"]) if "stock" in times else float("nan")
        for variant, measured in times.items():
            step = statistics.median(measured)
            rows.append(
                {
                    "config": text,
                    "variant": variant,
                    "step_s": step,
                    "tokens_per_s": args.batch / step,
                    "x_vs_stock": stock_time / step,
                    "floor_share": floor / step,
                    "bf16_gemm_floor_s": floor,
                }
            )
        tqdm.write(pd.DataFrame([r for r in rows if r["config"] == text]).to_string(index=False))

    pd.set_option("display.width", 200)
    print(
        f"\nStep throughput, batch {args.batch}, arch {args.arch}, dead share {args.dead_frac}, median of "
        f"{args.steps} interleaved rounds (load average now {os.getloadavg()[0]:.2f}, peak RSS {peak_rss_gib():.1f} GiB)"
    )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if phase_rows:
        table = pd.DataFrame(phase_rows).pivot_table(index="phase", columns="config", values="ms", sort=False)
        print("\nWhere the fast step spends time (ms, one profiled step)")
        print(table.to_string(float_format=lambda v: f"{v:.0f}"))


if __name__ == "__main__":
    main()

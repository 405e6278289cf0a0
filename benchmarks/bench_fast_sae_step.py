"""Training-step throughput: EleutherAI's sparsify and SAELens' stock classes vs qwen3-scope's fast classes.

Everything runs in one process on the same inputs, rounds interleaved. A SAELens step is `SAETrainer.step`
(forward, loss, backward, grad clipping, Adam, dead-latent bookkeeping) from the same initial weights; a
sparsify step is what its `Trainer` does per batch with `loss_fn="fvu"`, `optimizer="adam"` (TopK only):
decoder renorm, `SparseCoder` forward, FVU (+ AuxK when latents are dead) backward, removal of the gradient
parallel to the decoder directions, Adam step and LR schedule, firing bookkeeping. Batch 4096 tokens by
default. Printed: tokens/s, ratios vs the stock step and vs sparsify's, the share of the floor (one
(tokens x d_in) @ (d_in x d_sae) GEMM in the device's native dtype: bf16 where the hardware runs it, else
fp32; / step time), and where the fast and sparsify steps spend time.

    python benchmarks/bench_fast_sae_step.py                     # all default sizes
    python benchmarks/bench_fast_sae_step.py --configs 2048x16384x50 --steps 2 --warmup 1
    python benchmarks/bench_fast_sae_step.py --arch jumprelu --dead-frac 0.05
    python benchmarks/bench_fast_sae_step.py --device cuda --configs 2048x16384x50 4096x65536x160

sparsify comes with the benchmark extra: pip install -e '.[benchmark]'.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer
from torch.profiler import ProfilerActivity, profile, record_function
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

import qwen3_scope  # noqa: F401  (registers the fast classes)
from qwen3_scope.core.io import atomic_write_json
from qwen3_scope.saes.fast_saes import (
    FastJumpReLUTrainingSAE,
    FastJumpReLUTrainingSAEConfig,
    FastTopKTrainingSAE,
    FastTopKTrainingSAEConfig,
    enable_fused_adam,
)
from qwen3_scope.saes.sparse_ops import _cpu_flags, bf16_matmul_supported

try:  # the `benchmark` extra
    import sparsify.utils
    from sparsify import SparseCoder, SparseCoderConfig
except ImportError:
    SparseCoder = None

DEFAULT_CONFIGS = ["2048x16384x50", "2048x32768x50", "4096x65536x160", "128x2048x32"]
DEAD_WINDOW = 1000
SPARSIFY_MISSING = "skipped: pip install -e '.[benchmark]'"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
PHASES = {
    "fast_sae.encoder_gemm": "encoder GEMM (+weight casts)",
    "fast_sae.select": "top-k / pair selection",
    "fast_sae.sparse_forward": "sparse decode + losses",
    "Optimizer.step#Adam.step": "optimizer (fused Adam)",
}
SPARSIFY_PHASES = {  # record_function labels of SparsifyStep.step
    "sparsify.renorm": "decoder renorm",
    "sparsify.forward": "forward (fused encoder + embedding_bag decoder + FVU)",
    "sparsify.backward": "backward",
    "sparsify.remove_parallel_grad": "decoder-parallel gradient removal",
    "sparsify.adam": "optimizer (Adam + LR schedule)",
    "sparsify.bookkeeping": "firing bookkeeping",
}


def parse_config(text: str) -> tuple[int, int, int]:
    try:
        d_in, d_sae, k = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise SystemExit(f"--configs entries look like 2048x16384x50 (d_in x d_sae x k), got {text!r}") from err
    return d_in, d_sae, k


def build_sae(variant: str, arch: str, d_in: int, d_sae: int, k: int, device: str) -> Any:
    common: dict[str, Any] = {"d_in": d_in, "d_sae": d_sae, "device": device}
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
    sae = build_sae(variant, arch, d_in, d_sae, k, str(x.device))
    if not initial:
        if arch == "jumprelu":
            calibrate_thresholds(sae, x, k)
        initial.update({name: t.detach().clone() for name, t in sae.state_dict().items()})
    sae.load_state_dict(initial)
    return sae


def make_trainer(sae: Any, batch: int) -> SAETrainer:
    cfg = SAETrainerConfig(
        device=str(sae.W_enc.device),
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainerStep:
    """One SAELens `SAETrainer.step` (stock or fast class)."""

    def __init__(self, trainer: SAETrainer) -> None:
        self.trainer = trainer

    def step(self, x: torch.Tensor, dead: torch.Tensor | None) -> None:
        if dead is not None:  # keep the same latents dead every step, so AuxK always runs on them
            self.trainer.n_forward_passes_since_fired[dead] = DEAD_WINDOW + 1
        self.trainer.step(x)
        self.trainer.n_training_steps += 1


class SparsifyStep:
    """One training step of sparsify's `Trainer.fit` for a batch of activations, made of its own classes and methods
    (`SparseCoder`, its forward's FVU and AuxK, `remove_gradient_parallel_to_decoder_directions`,
    `set_decoder_norm_to_unit_norm`) and the optimizer it builds for `optimizer="adam"` without bitsandbytes
    (torch's Adam at its default LR 2e-4 / sqrt(num_latents / 2**14), transformers' linear warmup schedule).
    `loss_fn="fvu"`, one micro-batch, no gradient accumulation; AuxK (`auxk_alpha` 1/32) runs when latents are held
    dead, as in the other variants."""

    def __init__(self, d_in: int, d_sae: int, k: int, x: torch.Tensor, auxk: bool) -> None:
        torch.manual_seed(1)
        self.sae = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k), device=x.device, dtype=torch.float32)
        self.sae.b_dec.data = x.mean(0)  # what the trainer does at step 0
        self.optimizer = torch.optim.Adam([{"params": self.sae.parameters(), "lr": 2e-4 / (d_sae / 2**14) ** 0.5}])
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, 1000, 10**6)
        self.auxk_alpha = 1 / 32 if auxk else 0.0
        self.threshold = 10_000_000  # TrainConfig.dead_feature_threshold (tokens)
        self.since_fired = torch.zeros(d_sae, dtype=torch.long, device=x.device)
        self.did_fire = torch.zeros(d_sae, dtype=torch.bool, device=x.device)

    def step(self, x: torch.Tensor, dead: torch.Tensor | None) -> None:
        if dead is not None:
            self.since_fired[dead] = self.threshold + 1
        with record_function("sparsify.renorm"):
            self.sae.set_decoder_norm_to_unit_norm()
        with record_function("sparsify.forward"):
            dead_mask = self.since_fired > self.threshold if self.auxk_alpha > 0 else None
            total_variance = (x - x.mean(0)).pow(2).sum()
            out = self.sae(x=x, y=x, dead_mask=dead_mask, total_variance=total_variance)
            self.did_fire[out.latent_indices.flatten()] = True
            float(out.fvu.detach())  # the trainer logs it every step
            loss = out.fvu + self.auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        with record_function("sparsify.backward"):
            loss.backward()
        with record_function("sparsify.remove_parallel_grad"):
            self.sae.remove_gradient_parallel_to_decoder_directions()
        with record_function("sparsify.adam"):
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.scheduler.step()
        with record_function("sparsify.bookkeeping"), torch.no_grad():
            self.since_fired += x.shape[0]
            self.since_fired[self.did_fire] = 0
            self.did_fire.zero_()


def run_steps(runner: TrainerStep | SparsifyStep, x: torch.Tensor, n: int, dead: torch.Tensor | None) -> list[float]:
    times = []
    for _ in range(n):
        synchronize(x.device)
        start = time.perf_counter()
        runner.step(x, dead)
        synchronize(x.device)
        times.append(time.perf_counter() - start)
    return times


def native_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if bf16_matmul_supported(device) else torch.float32


class NativeGemm:
    """The floor: one (tokens x d_in) @ (d_in x d_sae) matmul in the device's native dtype (bf16 where the hardware
    runs it, fp32 otherwise), in the layout the fast class uses."""

    def __init__(self, batch: int, d_in: int, d_sae: int, device: torch.device) -> None:
        self.device = device
        self.dtype = native_dtype(device)
        self.x = torch.randn(batch, d_in, device=device, dtype=self.dtype)
        self.w = torch.randn(d_sae, d_in, device=device, dtype=self.dtype)
        self.out = torch.empty(batch, d_sae, device=device, dtype=self.dtype)
        self.time()

    def time(self) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        torch.mm(self.x, self.w.t(), out=self.out)
        synchronize(self.device)
        return time.perf_counter() - start


def memory_groups(
    variants: list[str],
    batch: int,
    d_in: int,
    d_sae: int,
    rows: list[dict[str, Any]],
    config: str,
    budget: float | None,
    device: torch.device,
) -> list[list[str]]:
    """Variants that fit in memory together run interleaved; a variant that fits nowhere is skipped."""
    budget = 0.85 * mem_available_gib(device) if budget is None else budget
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
    runs: dict[str, TrainerStep | SparsifyStep],
    x: torch.Tensor,
    dead: torch.Tensor | None,
    steps: int,
    floor_gemm: NativeGemm,
    times: dict[str, list[float]],
    floors: list[float],
) -> None:
    """Rounds interleave the variants (and the floor GEMM), so slow and fast periods of a shared machine
    hit all of them alike."""
    for _ in tqdm(range(steps), desc="+".join(runs), leave=False):
        floors.append(floor_gemm.time())
        for variant, runner in runs.items():
            times.setdefault(variant, []).extend(run_steps(runner, x, 1, dead))


def breakdown(runner: TrainerStep | SparsifyStep, x: torch.Tensor, dead: torch.Tensor | None) -> dict[str, float]:
    """Seconds per phase of one profiled step (top-level events of the main thread; host-side times on CUDA)."""
    sparsify_step = isinstance(runner, SparsifyStep)
    names = SPARSIFY_PHASES if sparsify_step else PHASES
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        synchronize(x.device)
        start = time.perf_counter()
        runner.step(x, dead)
        synchronize(x.device)
        total = time.perf_counter() - start
    main = [e for e in prof.events() if e.cpu_parent is None]
    thread = max(main, key=lambda e: e.time_range.elapsed_us()).thread if main else None
    phases: dict[str, float] = {name: 0.0 for name in names.values()}
    if not sparsify_step:
        phases["backward (sparse kernels)"] = 0.0
    for event in main:
        if event.thread != thread:
            continue
        seconds = event.time_range.elapsed_us() / 1e6
        if event.name in names:
            phases[names[event.name]] += seconds
        elif event.name.startswith("autograd::engine::evaluate_function") and not sparsify_step:
            phases["backward (sparse kernels)"] += seconds
    other = "other" if sparsify_step else "other (loss, clip, trainer bookkeeping)"
    phases[other] = max(total - sum(phases.values()), 0.0)
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


def mem_available_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / 2**30
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
    per_token = {"stock": 10, "sparsify": 4}.get(variant, 6) * 4 * d_sae
    return (weights + batch * per_token) / 2**30


def device_report(device: torch.device) -> str:
    """The device, its native GEMM dtype (the floor's) and, on CPU, the flags that decide it."""
    floor = "bf16" if native_dtype(device) == torch.bfloat16 else "fp32"
    if device.type == "cuda":
        decoder = "absent"
        if SparseCoder is not None:
            decoder = "Triton" if sparsify.utils.decoder_impl is sparsify.utils.triton_decode else "eager"
        return f"{torch.cuda.get_device_name(device)}; floor dtype {floor}; sparsify decoder: {decoder}"
    flags = _cpu_flags()
    shown = " ".join(f"{flag}={'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS)
    return f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {shown}; floor dtype {floor}"


def build_runner(
    variant: str, args: argparse.Namespace, d_in: int, d_sae: int, k: int, x: torch.Tensor, initial: dict
) -> TrainerStep | SparsifyStep:
    if variant == "sparsify":
        return SparsifyStep(d_in, d_sae, k, x, auxk=args.dead_frac > 0)
    return TrainerStep(make_trainer(initialized_sae(variant, args.arch, d_in, d_sae, k, x, initial), args.batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="d_in x d_sae x k entries")
    parser.add_argument("--arch", choices=["topk", "jumprelu"], default="topk")
    parser.add_argument("--batch", type=int, default=4096, help="tokens per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    parser.add_argument("--dead-frac", type=float, default=0.0, help="share of latents held dead (AuxK runs)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["sparsify", "stock", "fast_float32", "fast_auto"],
        choices=["sparsify", "stock", "fast_float32", "fast_auto"],
        help="sparsify runs for --arch topk only",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument(
        "--memory-budget-gib",
        type=float,
        default=None,
        help="memory for the variants run together (default 85%% of MemAvailable, or of free GPU memory)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the tables to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine (torch reports no GPU)")
    variants = list(args.variants)
    notes: dict[str, str] = {}
    if "sparsify" in variants and (args.arch != "topk" or SparseCoder is None):
        variants.remove("sparsify")
        notes["sparsify"] = SPARSIFY_MISSING if SparseCoder is None else "skipped: sparsify trains TopK only"

    header = (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}: {device_report(device)}; "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    print(header)
    rows, phase_rows = [], []
    for text in tqdm(args.configs, desc="configs"):
        d_in, d_sae, k = parse_config(text)
        torch.manual_seed(0)
        x = torch.randn(args.batch, d_in).to(device)
        n_dead = int(args.dead_frac * d_sae)
        dead = torch.randperm(d_sae)[:n_dead].to(device) if n_dead else None
        floor_gemm = NativeGemm(args.batch, d_in, d_sae, device)
        initial: dict[str, torch.Tensor] = {}
        times: dict[str, list[float]] = {}
        floors: list[float] = []
        rows.extend({"config": text, "variant": variant, "note": note} for variant, note in notes.items())
        groups = memory_groups(variants, args.batch, d_in, d_sae, rows, text, args.memory_budget_gib, device)
        for group in groups:
            runs = {}
            for variant in group:
                runs[variant] = build_runner(variant, args, d_in, d_sae, k, x, initial)
                run_steps(runs[variant], x, args.warmup, dead)
            timed_rounds(runs, x, dead, args.steps, floor_gemm, times, floors)
            for variant in dict.fromkeys(["sparsify", variants[-1]]):  # the last variant is the class to explain
                if variant in runs and variant != "stock":
                    for phase, seconds in breakdown(runs[variant], x, dead).items():
                        phase_rows.append({"config": text, "variant": variant, "phase": phase, "ms": 1e3 * seconds})
            del runs
            gc.collect()
        floor = statistics.median(floors) if floors else float("nan")
        medians = {variant: statistics.median(measured) for variant, measured in times.items()}
        for variant, step in medians.items():
            rows.append(
                {
                    "config": text,
                    "variant": variant,
                    "step_s": step,
                    "tokens_per_s": args.batch / step,
                    "x_vs_stock": medians.get("stock", float("nan")) / step,
                    "x_vs_sparsify": medians.get("sparsify", float("nan")) / step,
                    "floor_share": floor / step,
                    "floor_dtype": "bf16" if floor_gemm.dtype == torch.bfloat16 else "fp32",
                    "floor_s": floor,
                }
            )
        tqdm.write(pd.DataFrame([r for r in rows if r["config"] == text]).to_string(index=False))

    pd.set_option("display.width", 220)
    summary = (
        f"Step throughput, batch {args.batch}, arch {args.arch}, dead share {args.dead_frac}, device {device}, median "
        f"of {args.steps} interleaved rounds (load average now {os.getloadavg()[0]:.2f}, peak RSS {peak_rss_gib():.1f} GiB)"
    )
    print(f"\n{summary}")
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    phases = pd.DataFrame(phase_rows)
    for variant, part in phases.groupby("variant", sort=False) if phase_rows else []:
        pivot = part.pivot_table(index="phase", columns="config", values="ms", sort=False)
        where = " (host-side: GPU kernels run asynchronously)" if device.type == "cuda" else ""
        print(f"\nWhere the {variant} step spends time (ms, one profiled step){where}")
        print(pivot.to_string(float_format=lambda v: f"{v:.0f}"))
    if args.json is not None:
        wide: dict[tuple[str, str], dict[str, Any]] = {}  # one row per variant and phase, in the profile's order
        for row in phase_rows:
            wide.setdefault((row["variant"], row["phase"]), {"variant": row["variant"], "phase": row["phase"]})
            wide[row["variant"], row["phase"]][row["config"]] = row["ms"]
        atomic_write_json(
            args.json,
            {
                "benchmark": "bench_fast_sae_step",
                "device": str(device),
                "header": header,
                "summary": summary,
                "tables": {
                    "steps": json.loads(table.to_json(orient="records")),
                    "phases_ms": list(wide.values()),
                },
            },
            sort_keys=False,
        )


if __name__ == "__main__":
    main()

"""Group a suite's SAEs so each group shares model forward passes and fits a memory budget.

Why: an SAE at every layer and site of Qwen3-4B is 108 SAEs. Training them one at a time repeats the
model's forward pass 108 times; training all at once does not fit in memory (each 40,960 x 2,560 JumpReLU
SAE holds ~3.4 GB of weights, gradients and Adam state). SAELens' MultiSAETrainingRunner trains a group
from one forward pass; the planner packs groups in layer order (so a group of early layers stops the
forward early) under a budget, and prices the plan against "one SAELens run per SAE".

Memory model, in bytes (float32): per SAE 16 x params (weights, gradients, two Adam moments) plus one
step's transient (~6 x batch x d_sae); per group, the shared activation stream: the mixing buffer (held
twice while it is shuffled), one model batch and the norm-estimate cache, each x sum of the group's d_in.
Cost model: model forward 2 x (matmul params up to the deepest layer; for MoE models only the experts a
token is routed to) FLOPs per token, SAE step
12 x d_in x d_sae FLOPs per token, at the measured matmul throughput x 50% efficiency.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.family import Qwen3ModelSpec
from qwen3_scope.training.recipes import SAEJob, SuiteJobs

GIB = 1024**3
EFFICIENCY = 0.5  # share of peak matmul throughput a training step / forward pass achieves


class PlanError(ConfigError):
    """A suite that cannot be planned (an SAE larger than the memory budget, a bad group cap)."""


class ModelDoesNotFitError(PlanError):
    pass


def available_memory_bytes() -> int:
    try:
        import psutil  # lazy: optional dependency

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil is optional
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def measure_matmul_flops(size: int = 1024, repeats: int = 3, device: str = "cpu", dtype: Any = None) -> float:
    """Matmul FLOP/s of this machine's `device` in `dtype` (default fp32) right now (about 0.1 s), to turn FLOPs
    into hours."""
    dtype = dtype or torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize()
    return 2 * size**3 * repeats / max(time.perf_counter() - start, 1e-9)


def layer_matmul_params(spec: Qwen3ModelSpec, active: bool = True) -> int:
    """Matmul weights of one block; for MoE models the experts a token uses (`active`) or all of them."""
    attn = spec.d_model * spec.d_attn * 2 + spec.d_model * spec.n_kv_heads * spec.head_dim * 2
    if spec.is_moe:
        experts = spec.n_experts_active if active else spec.n_experts
        return (
            attn + (experts * spec.d_expert + spec.d_shared_expert) * 3 * spec.d_model + spec.n_experts * spec.d_model
        )
    return attn + 3 * spec.d_model * spec.d_mlp


def model_bytes(spec: Qwen3ModelSpec, runner: dict[str, Any], dtype_bytes: int = 4) -> int:
    """Weights plus one forward's activations (attention scores included)."""
    params = spec.n_layers * layer_matmul_params(spec, active=False) + spec.vocab_size * spec.d_model * (
        1 if spec.tie_embeddings else 2
    )
    tokens = runner["store_batch_size_prompts"] * runner["context_size"]
    acts = (
        tokens * (4 * spec.d_mlp + 8 * spec.d_model)
        + runner["store_batch_size_prompts"] * spec.n_heads * runner["context_size"] ** 2
    )
    return (params + acts) * dtype_bytes


def sae_params(job: SAEJob) -> int:
    extra = job.d_sae if "jumprelu" in job.architecture else 0
    if job.is_transcoder:  # encoder d_in x d_sae, decoder d_sae x d_out, W_skip d_out x d_in when present
        d_out = job.d_out or job.d_in
        skip = d_out * job.d_in if "skip" in job.architecture else 0
        return (job.d_in + d_out) * job.d_sae + job.d_sae + d_out + extra + skip
    return 2 * job.d_in * job.d_sae + job.d_sae + job.d_in + extra


@dataclass
class Group:
    index: int
    jobs: list[SAEJob]
    memory: dict[str, int] = field(default_factory=dict)
    forward_flops: float = 0.0
    sae_flops: float = 0.0

    @property
    def deepest_layer(self) -> int:
        return max(j.layer for j in self.jobs)

    @property
    def hooks(self) -> list[str]:
        """The group's stream keys: each SAE's hook, each transcoder's (input, target) pair key."""
        return list(dict.fromkeys(j.stream_key for j in self.jobs))

    @property
    def memory_bytes(self) -> int:
        return sum(self.memory.values())


def group_memory(jobs: list[SAEJob], runner: dict[str, Any]) -> dict[str, int]:
    hooks = {j.stream_key: j.d_in + (j.d_out or 0) for j in jobs}  # a transcoder streams input and target
    sum_d = sum(hooks.values())
    kept = len(range(runner["context_size"])[slice(*runner["seqpos_slice"])])
    model_batch = runner["store_batch_size_prompts"] * runner["context_size"]
    buffer_tokens = runner["n_batches_in_buffer"] * kept + model_batch
    stream_tokens = (
        2 * buffer_tokens + model_batch + runner["n_batches_for_norm_estimate"] * runner["train_batch_size_tokens"]
    )
    return {
        "sae_state": sum(16 * sae_params(j) for j in jobs),
        "step_transient": max(6 * runner["train_batch_size_tokens"] * j.d_sae * 4 for j in jobs),
        "activation_stream": 4 * sum_d * stream_tokens,
    }


@dataclass
class SuitePlan:
    suite: SuiteJobs
    groups: list[Group]
    budget_bytes: int
    model_bytes: int
    matmul_flops: float
    llm_tokens: int
    baseline_flops: float

    @property
    def total_flops(self) -> float:
        return sum(g.forward_flops + g.sae_flops for g in self.groups)

    def seconds(self, flops: float) -> float:
        return flops / (self.matmul_flops * EFFICIENCY)

    def table(self) -> pd.DataFrame:
        rows = []
        for g in self.groups:
            layers = sorted({j.layer for j in g.jobs})
            rows.append(
                dict(
                    group=g.index,
                    saes=len(g.jobs),
                    layers=f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else str(layers[0]),
                    sites=",".join(dict.fromkeys(j.site for j in g.jobs)),
                    hooks=len(g.hooks),
                    sae_state_gib=round(g.memory["sae_state"] / GIB, 3),
                    stream_gib=round(g.memory["activation_stream"] / GIB, 3),
                    total_gib=round(g.memory_bytes / GIB, 3),
                    forward_tflop=round(g.forward_flops / 1e12, 3),
                    sae_tflop=round(g.sae_flops / 1e12, 3),
                    est_hours=round(self.seconds(g.forward_flops + g.sae_flops) / 3600, 3),
                )
            )
        return pd.DataFrame(rows)

    def summary(self) -> str:
        s = self.suite
        hours = self.seconds(self.total_flops) / 3600
        base_hours = self.seconds(self.baseline_flops) / 3600
        lines = [
            f"suite {s.name}: {len(s.jobs)} SAEs ({s.recipe.name} recipe, {s.jobs[0].architecture}, {s.scale} scale) on "
            f"{s.spec.name}, {s.training_tokens:,} training tokens each, backend {s.backend}",
            f"memory budget {self.budget_bytes / GIB:.2f} GiB for SAEs and activations (+ model "
            f"{self.model_bytes / GIB:.2f} GiB); {len(self.groups)} group(s) sharing forward passes",
            _shorten(self.table()).to_string(index=False),
            f"expected cost: {self.total_flops / 1e12:,.2f} TFLOP ~ {_duration(hours)} at "
            f"{self.matmul_flops / 1e9:,.0f} GFLOP/s x {EFFICIENCY:.0%}; one SAELens run per SAE would be "
            f"{self.baseline_flops / 1e12:,.2f} TFLOP ~ {_duration(base_hours)} ({self.baseline_flops / max(self.total_flops, 1):.2f}x)",
        ]
        if s.spec.is_moe:
            counts = s.spec.parameter_counts()
            lines.append(
                f"MoE: the forward pass is priced at the {counts['active'] / 1e9:.1f}B parameters a token uses "
                f"({s.spec.n_experts_active} of {s.spec.n_experts} experts), memory at all {counts['total'] / 1e9:.1f}B"
            )
        lines += [f"note: {n}" for n in s.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dict(
            budget_bytes=self.budget_bytes,
            model_bytes=self.model_bytes,
            matmul_gflops=round(self.matmul_flops / 1e9, 1),
            total_tflop=round(self.total_flops / 1e12, 4),
            baseline_tflop=round(self.baseline_flops / 1e12, 4),
            groups=[
                dict(index=g.index, sae_ids=[j.sae_id for j in g.jobs], hooks=g.hooks, memory=g.memory)
                for g in self.groups
            ],
        )


def _shorten(table: pd.DataFrame, keep: int = 12) -> pd.DataFrame:
    """First and last rows of a long plan (every group is in `table()` and in plan.json)."""
    if len(table) <= 2 * keep:
        return table
    gap = pd.DataFrame([{c: "..." for c in table.columns}])
    return pd.concat([table.head(keep).astype(object), gap, table.tail(keep).astype(object)], ignore_index=True)


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _forward_flops_per_token(spec: Qwen3ModelSpec, deepest_layer: int, backend: str, context: int) -> float:
    layers = deepest_layer + 1 if backend == "hooked" else spec.n_layers  # HookedProxyLM cannot stop early
    attention = 2 * 2 * context * spec.d_attn  # scores and weighted values, averaged over positions (x2 causal)
    flops = layers * (2 * layer_matmul_params(spec) + attention / 2)
    if backend != "hooked":
        flops += 2 * spec.d_model * spec.vocab_size
    return flops


def _balanced(groups: list[Group], runner: dict[str, Any], budget: int) -> list[Group]:
    """Same number of groups, sizes evened out (27/27/27/3 -> 21/21/21/21) when that still fits."""
    jobs = [j for g in groups for j in g.jobs]
    size = -(-len(jobs) // len(groups))
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    if len(chunks) != len(groups) or any(sum(group_memory(c, runner).values()) > budget for c in chunks):
        return groups
    return [Group(i, c) for i, c in enumerate(chunks)]


def plan_suite(
    suite: SuiteJobs,
    memory_budget_gb: float | None = None,
    max_saes_per_group: int | None = None,
    matmul_flops: float | None = None,
) -> SuitePlan:
    """Pack the suite's SAEs (in layer order) into forward-sharing groups that fit the budget.

    Default budget: 75% of the memory available now, minus the model. Raises PlanError when a single SAE
    does not fit, naming the knobs that shrink it.
    """
    runner = suite.runner_kwargs
    m_bytes = model_bytes(suite.spec, runner)
    if memory_budget_gb is None:
        available = int(0.75 * available_memory_bytes())
        budget = available - m_bytes
        if budget <= 0:
            raise ModelDoesNotFitError(
                f"{suite.spec.name} alone needs ~{m_bytes / GIB:.1f} GiB (fp32 weights and one forward), more than "
                f"75% of the memory available now ({available / GIB:.1f} GiB). Train on a larger machine, or pass "
                "--memory-gb to plan for one (the budget then covers SAEs and activations only)."
            )
    else:
        budget = int(memory_budget_gb * GIB)
    if max_saes_per_group is not None and max_saes_per_group < 1:
        raise PlanError(f"max_saes_per_group must be >= 1, got {max_saes_per_group}.")
    groups: list[Group] = []
    current: list[SAEJob] = []
    for job in sorted(suite.jobs, key=lambda j: (j.layer, suite.jobs.index(j))):
        single = sum(group_memory([job], runner).values())
        if single > budget:
            raise PlanError(
                f"SAE {job.sae_id} alone needs {single / GIB:.2f} GiB (weights, gradients, Adam state and "
                f"activation buffers), more than the {max(budget, 0) / GIB:.2f} GiB budget. Raise --memory-gb, lower "
                "the width (--width), train_batch_size_tokens or n_batches_in_buffer."
            )
        full = max_saes_per_group is not None and len(current) >= max_saes_per_group
        if current and (full or sum(group_memory(current + [job], runner).values()) > budget):
            groups.append(Group(len(groups), current))
            current = []
        current.append(job)
    groups.append(Group(len(groups), current))
    return priced_plan(suite, [g.jobs for g in _balanced(groups, runner, budget)], budget, matmul_flops)


def priced_plan(
    suite: SuiteJobs, groups: list[list[SAEJob]], budget: int, matmul_flops: float | None = None
) -> SuitePlan:
    """A plan for a given grouping (also how a resumed suite re-prices its recorded groups)."""
    runner = suite.runner_kwargs
    kept = len(range(runner["context_size"])[slice(*runner["seqpos_slice"])])
    llm_tokens = int(suite.training_tokens * runner["context_size"] / kept * 1.05)
    llm_tokens += runner["n_batches_for_norm_estimate"] * runner["train_batch_size_tokens"]
    ctx = runner["context_size"]
    baseline = 0.0
    priced = []
    for index, jobs in enumerate(groups):
        g = Group(index, jobs, memory=group_memory(jobs, runner))
        g.forward_flops = _forward_flops_per_token(suite.spec, g.deepest_layer, suite.backend, ctx) * llm_tokens
        g.sae_flops = sum(12 * j.d_in * j.d_sae for j in jobs) * suite.training_tokens
        baseline += g.sae_flops + sum(
            _forward_flops_per_token(suite.spec, j.layer, suite.backend, ctx) * llm_tokens for j in jobs
        )
        priced.append(g)
    return SuitePlan(
        suite,
        priced,
        budget,
        model_bytes(suite.spec, runner),
        matmul_flops or measure_matmul_flops(),
        llm_tokens,
        baseline,
    )

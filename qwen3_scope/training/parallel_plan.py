"""How a suite's groups are spread over the ranks of a torch.distributed job: group or data parallelism.

Why: a suite is many independent groups of SAEs (see `planner`), so the cheapest parallelism is to give
each rank whole groups (no step-level communication; every SAE equals the one a single process trains).
Groups are assigned longest-processing-time first using the planner's cost model. When there are fewer
groups than ranks, the groups are re-cut into as many groups as ranks (an SAE does not depend on the
group it is trained in, see `suite.SuiteTrainer`), which costs extra LLM forward passes; when that is
impossible (more ranks than SAEs, or a recipe whose outlier filter makes a group's token set depend on its
members) or predicted slower, the ranks train each group together with data parallelism: each reads its
own shards of the token stream and the SAE gradients are all-reduced (`data_parallel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.training.planner import Group, SuitePlan, group_memory, priced_plan, sae_params

MODES = ("auto", "group", "data")
INTERCONNECT_BYTES_PER_SECOND = 10e9  # all-reduce bandwidth assumed per rank (NVLink/InfiniBand class: 10 GB/s)
PREFER_GROUP_WITHIN = 1.10  # group parallelism (bit-identical to one process, no traffic) wins unless 10% slower


class ParallelPlanError(ConfigError):
    """Ranks that cannot share the suite as asked (mode, data shards, world size)."""


@dataclass
class ParallelPlan:
    """What each rank does: `mode` "group" (whole groups per rank, `assignment` group -> rank) or "data"
    (every rank trains every group on `data_shards` shards of the stream, `data_shards / world_size` each)."""

    mode: str
    world_size: int
    data_shards: int
    plan: SuitePlan
    assignment: dict[int, int] = field(default_factory=dict)
    predicted_seconds: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def rank_seconds(self) -> list[float]:
        """Predicted busy time of each rank (planner cost model)."""
        busy = [0.0] * self.world_size
        for g in self.plan.groups:
            cost = self.plan.seconds(g.forward_flops + g.sae_flops)
            if self.mode == "group":
                busy[self.assignment[g.index]] += cost
            else:
                for r in range(self.world_size):
                    busy[r] += cost / self.world_size + comm_seconds(g, self.plan, self.world_size)
        return busy

    @property
    def makespan(self) -> float:
        return max(self.rank_seconds())

    def summary(self) -> str:
        busy = self.rank_seconds()
        mean = sum(busy) / len(busy)
        head = (
            f"parallelism: {self.mode} over {self.world_size} rank(s)"
            + (f", {self.data_shards} data shard(s)" if self.mode == "data" else "")
            + f"; predicted makespan {_fmt(self.makespan)}, imbalance {self.makespan / max(mean, 1e-12):.3f} "
            f"(max/mean rank busy time)"
        )
        lines = [head]
        if self.reason:
            lines.append(f"  why: {self.reason}")
        if self.mode == "group" and self.world_size > 1:
            for r in range(self.world_size):
                mine = [g.index for g in self.plan.groups if self.assignment[g.index] == r]
                lines.append(f"  rank {r}: groups {mine} ({_fmt(busy[r])})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dict(
            mode=self.mode,
            world_size=self.world_size,
            data_shards=self.data_shards,
            assignment={str(k): v for k, v in self.assignment.items()},
            predicted_rank_seconds=[round(s, 3) for s in self.rank_seconds()],
            reason=self.reason,
        )


def _fmt(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def group_seconds(plan: SuitePlan, group: Group) -> float:
    return plan.seconds(group.forward_flops + group.sae_flops)


def comm_seconds(group: Group, plan: SuitePlan, world_size: int) -> float:
    """All-reduce time of one group in data parallelism: gradients and firing counts each step (ring: 2(n-1)/n)."""
    if world_size <= 1:
        return 0.0
    runner = plan.suite.runner_kwargs
    steps = plan.suite.training_tokens // runner["train_batch_size_tokens"]
    return steps * step_bytes(group) * 2 * (world_size - 1) / world_size / INTERCONNECT_BYTES_PER_SECOND


def step_bytes(group: Group) -> int:
    """Bytes one rank contributes to the all-reduces of one data-parallel step (fp32 gradients + firing counts)."""
    return sum(4 * (sae_params(j) + j.d_sae) for j in group.jobs)


def lpt_assignment(costs: dict[int, float], n_ranks: int) -> dict[int, int]:
    """Longest processing time first: each group, costliest first, to the least loaded rank (ties: lowest rank)."""
    load = [0.0] * n_ranks
    out: dict[int, int] = {}
    for index in sorted(costs, key=lambda i: (-costs[i], i)):
        rank = min(range(n_ranks), key=lambda r: (load[r], r))
        out[index] = rank
        load[rank] += costs[index]
    return out


def split_groups(plan: SuitePlan, n_groups: int) -> SuitePlan:
    """The suite's SAEs (in the plan's layer order) cut into `n_groups` contiguous groups minimising the costliest
    group (each group's forward pass stops at its deepest layer)."""
    jobs = [j for g in plan.groups for j in g.jobs]
    n_groups = min(n_groups, len(jobs))

    def cost(i: int, k: int) -> float:  # group of jobs[i:k]
        g = priced_plan(plan.suite, [jobs[i:k]], plan.budget_bytes, plan.matmul_flops).groups[0]
        return group_seconds(plan, g)

    n = len(jobs)
    memo: dict[tuple[int, int], tuple[float, list[int]]] = {}

    def best(i: int, parts: int) -> tuple[float, list[int]]:  # min over cuts of the max cost of jobs[i:] in parts
        if (i, parts) in memo:
            return memo[(i, parts)]
        if parts == 1:
            result = (cost(i, n), [n])
        else:
            result = (float("inf"), [])
            for k in range(i + 1, n - parts + 2):
                head = cost(i, k)
                if head >= result[0]:
                    break
                tail, cuts = best(k, parts - 1)
                if max(head, tail) < result[0]:
                    result = (max(head, tail), [k] + cuts)
        memo[(i, parts)] = result
        return result

    _, cuts = best(0, n_groups)
    bounds = [0] + cuts
    groups = [jobs[a:b] for a, b in zip(bounds, bounds[1:])]
    return priced_plan(plan.suite, groups, plan.budget_bytes, plan.matmul_flops)


def grouping_invariant(plan: SuitePlan) -> bool:
    """Whether an SAE trains the same whatever group it is in: not with an outlier filter over the group's hooks."""
    return plan.suite.outlier_norm_factor is None


def data_parallel_problem(plan: SuitePlan, data_shards: int) -> str | None:
    """Why the suite cannot be trained data-parallel on `data_shards` shards (None when it can)."""
    runner = plan.suite.runner_kwargs
    batch = runner["train_batch_size_tokens"]
    if batch % data_shards:
        return (
            f"train_batch_size_tokens {batch} is not divisible by {data_shards} data shards (each shard must read "
            f"an equal share of every batch)"
        )
    for j in plan.suite.jobs:
        if getattr(j.sae_cfg, "normalize_activations", "none") == "covariance_whitening":
            return f"{j.sae_id} uses covariance whitening, whose statistics are not all-reduced"
    return None


def choose(
    plan: SuitePlan,
    world_size: int,
    mode: str = "auto",
    data_shards: int | None = None,
    recorded: dict[str, Any] | None = None,
    done: set[int] | None = None,
) -> ParallelPlan:
    """The parallelism for `world_size` ranks. `recorded` is the layout of the suite being resumed (its mode and
    data shards are kept; the assignment is recomputed for the groups not `done`)."""
    if mode not in MODES:
        raise ParallelPlanError(f"unknown parallel mode {mode!r}; choose one of {', '.join(MODES)}.")
    done = done or set()
    if recorded is not None:
        return _resume(plan, world_size, recorded, done)
    shards = data_shards or world_size
    if data_shards is not None and data_shards > 1 and mode == "auto":
        mode = "data"
    if world_size == 1:
        if mode == "data":
            problem = data_parallel_problem(plan, shards)
            if problem:
                raise ParallelPlanError(f"cannot train data-parallel: {problem}.")
            return ParallelPlan("data", 1, shards, plan, reason=f"requested: {shards} data shard(s) in one process")
        return ParallelPlan("group", 1, 1, plan, {g.index: 0 for g in plan.groups}, reason="one process")

    candidates: dict[str, ParallelPlan] = {}
    why_not: dict[str, str] = {}
    # group parallelism, on the plan's groups or re-cut into one group per rank
    group_plan = plan
    if len(plan.groups) < world_size:
        if not grouping_invariant(plan):
            why_not["group"] = (
                f"only {len(plan.groups)} group(s) for {world_size} ranks, and the recipe's outlier filter "
                "makes an SAE depend on its group, so the groups cannot be re-cut"
            )
        elif len(plan.suite.jobs) < world_size:
            why_not["group"] = f"only {len(plan.suite.jobs)} SAE(s) for {world_size} ranks"
        else:
            group_plan = split_groups(plan, world_size)
    if "group" not in why_not:
        options = [group_plan]
        if grouping_invariant(plan):  # re-cut into a multiple of the ranks when that balances better (and fits)
            for m in range(world_size, 4 * world_size + 1, world_size):
                if len(plan.groups) <= m <= len(plan.suite.jobs) and m != len(group_plan.groups):
                    cut = split_groups(plan, m)
                    if all(memory_of(g, cut) <= plan.budget_bytes for g in cut.groups):
                        options.append(cut)
        best = None
        for option in options:
            costs = {g.index: group_seconds(option, g) for g in option.groups}
            candidate = ParallelPlan("group", world_size, 1, option, lpt_assignment(costs, world_size))
            if best is None or candidate.makespan < 0.99 * best.makespan:
                best = candidate
        assert best is not None
        candidates["group"] = best
    if data_shards is not None and data_shards % world_size:
        why_not["data"] = f"{data_shards} data shards cannot be shared evenly by {world_size} ranks"
    else:
        problem = data_parallel_problem(plan, shards)
        if problem:
            why_not["data"] = problem
        else:
            candidates["data"] = ParallelPlan("data", world_size, shards, plan)
    for candidate in candidates.values():
        candidate.predicted_seconds = {k: c.makespan for k, c in candidates.items()}
    if mode != "auto":
        if mode not in candidates:
            raise ParallelPlanError(
                f"cannot use {mode} parallelism on {world_size} ranks: {why_not[mode]}. Use --parallel "
                f"auto, or fewer processes (--nproc)."
            )
        chosen = candidates[mode]
        chosen.reason = "requested with --parallel " + mode
        return chosen
    if not candidates:
        raise ParallelPlanError(
            f"{world_size} ranks cannot share this suite: group parallelism: {why_not['group']}; data parallelism: "
            f"{why_not['data']}. Use fewer processes (--nproc)."
        )
    if "group" in candidates and (
        "data" not in candidates or candidates["group"].makespan <= PREFER_GROUP_WITHIN * candidates["data"].makespan
    ):
        chosen = candidates["group"]
        split = len(chosen.plan.groups) != len(plan.groups)
        chosen.reason = (
            (
                f"{len(plan.groups)} planned group(s) re-cut into {len(chosen.plan.groups)} for {world_size} ranks; "
                if split
                else ""
            )
            + "group parallelism is exact (SAEs equal a one-process run) and needs no step traffic"
            + (
                f"; data parallelism was predicted {_fmt(candidates['data'].makespan)}"
                if "data" in candidates
                else f"; data parallelism: {why_not['data']}"
            )
        )
    else:
        chosen = candidates["data"]
        chosen.reason = (
            f"predicted {_fmt(chosen.makespan)} against {_fmt(candidates['group'].makespan)} for group parallelism"
            if "group" in candidates
            else f"group parallelism: {why_not['group']}"
        )
    return chosen


def _resume(plan: SuitePlan, world_size: int, recorded: dict[str, Any], done: set[int]) -> ParallelPlan:
    mode, shards = recorded["mode"], int(recorded.get("data_shards", 1))
    if mode == "data":
        if shards % world_size:
            divisors = [d for d in range(1, shards + 1) if shards % d == 0]
            raise ParallelPlanError(
                f"this suite is trained data-parallel on {shards} data shards, and its checkpoints hold one stream "
                f"position per shard: {world_size} rank(s) cannot share {shards} shards evenly. Resume with "
                f"{' or '.join(map(str, divisors))} process(es)."
            )
        return ParallelPlan("data", world_size, shards, plan, reason=f"resumed: {shards} data shard(s) as recorded")
    pending = {g.index: group_seconds(plan, g) for g in plan.groups if g.index not in done}
    assignment = {g.index: 0 for g in plan.groups}
    assignment.update(lpt_assignment(pending, world_size))
    return ParallelPlan(
        "group",
        world_size,
        1,
        plan,
        assignment,
        reason="resumed: the recorded groups, remaining ones spread over the ranks",
    )


def memory_of(group: Group, plan: SuitePlan) -> int:
    return sum(group_memory(group.jobs, plan.suite.runner_kwargs).values())

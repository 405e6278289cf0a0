"""Train a suite (every chosen layer x site) through SAELens' multi-SAE runner, with checkpoint and resume.

Why this layer over SAELens: SAELens' MultiSAETrainingRunner trains a group of SAEs from one forward pass,
but a suite needs many groups, one output layout, a manifest, and a resume that reproduces the
uninterrupted run. SAELens' own resume fast-forwards the dataset by rows and loses the shuffle buffer
and RNG state, so a resumed run sees different batches. Here each group's activation stream is cut into
segments (one per checkpoint interval): every segment starts from a recorded dataset row with a fresh
SAELens mixing buffer and a seeded RNG, in the uninterrupted run too. A checkpoint at a segment
boundary (SAELens' own per-SAE trainer state + our row offset) therefore restores everything the rest
of the run depends on, and the resumed suite is bit-identical to the uninterrupted one on the same
machine, thread count and library versions.

Layout of a suite directory:
    manifest.json                 model, recipe, SAE ids, hooks, tokens, data, plan, versions, status, metrics
    metrics.json                  {sae_id: {l0, variance_explained, ...}} (the registry reads it)
    data/train/train-*.parquet    the rendered training text (SAELens' `dataset_path` for every SAE)
    data/heldout/heldout.parquet  held-out documents (never trained on) the metrics are measured on
    <site>/layer_<L>/             cfg.json, sae_weights.safetensors, sparsity.safetensors, runner_cfg.json
    .checkpoints/group_<g>/       latest checkpoint of an unfinished group (removed when it finishes)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from qwen3_scope.core import compat
from qwen3_scope.core.io import atomic_write_json
from qwen3_scope.core.portable import portable_model_name
from qwen3_scope.data import PreparedData, check_source, load_prepared, prepare_data
from qwen3_scope.saes.fast_saes import enable_fused_adam
from qwen3_scope.training import guards
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.planner import Group, SuitePlan, plan_suite, priced_plan
from qwen3_scope.training.recipes import SuiteConfig, build_suite

log = logging.getLogger(__name__)
PLAN_ONLY_BUDGET_GB = 80  # what a plan-only run assumes when this machine cannot hold the model at all
MANIFEST = "manifest.json"
METRICS = "metrics.json"
FORMAT = "qwen3-scope-suite/1"


class SuiteExistsError(ValueError):
    pass


class ResumeMismatchError(ValueError):
    pass


@dataclass
class SuiteResult:
    suite_dir: Path
    manifest: dict[str, Any]
    plan: SuitePlan
    parallel: Any = None  # the ParallelPlan the ranks used (training.parallel_plan)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per trained SAE, in layer then site order."""
        saes = self.manifest.get("saes", {})
        rows = [
            dict(sae_id=k, layer=saes[k]["layer"], site=saes[k]["site"], **v)
            for k, v in self.manifest.get("metrics", {}).items()
        ]
        if not rows:
            return pd.DataFrame(rows)
        order = {j.sae_id: i for i, j in enumerate(self.plan.suite.jobs)}
        return pd.DataFrame(sorted(rows, key=lambda r: order.get(r["sae_id"], len(order)))).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
class SegmentedStream:
    """One group's multi-hook activation batches, restartable exactly at segment boundaries.

    Each segment reads the training rows from a recorded offset (a rotated view of the dataset) through
    SAELens' own store, filter and mixing buffer, with the global RNG (SAELens' shuffle) seeded per
    segment. `on_boundary(segment, state)` is called before a segment starts, when the trainer has
    finished every step of the previous one: that is where checkpoints are written.
    """

    def __init__(
        self,
        store: Any,
        dataset: Any,
        hooks: list[str],
        steps_per_segment: int,
        seed: int,
        outlier_norm_factor: float | None,
        steps_done: Callable[[], int],
    ):
        self.store, self.base, self.hooks = store, dataset, hooks
        self.steps_per_segment, self.seed, self.outlier_norm_factor = steps_per_segment, seed, outlier_norm_factor
        self.steps_done = steps_done
        self.on_boundary: Callable[[int, dict[str, int]], None] | None = None
        self.segment: int | None = None
        self.offset = 0
        self._rows_at_start = 0
        self._loader: Iterator[dict[str, torch.Tensor]] | None = None
        self.tokens_filtered = 0

    def state(self) -> dict[str, int]:
        return {"segment": int(self.segment or 0), "offset": int(self.offset)}

    def restore(self, state: dict[str, int]) -> None:
        """Continue from a checkpoint: the next batch starts segment `state['segment']` at its row offset."""
        self.segment, self.offset = None, int(state["offset"])

    def __iter__(self) -> SegmentedStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        wanted = self.steps_done() // self.steps_per_segment
        if wanted != self.segment:
            self._begin(wanted)
        return next(self._loader)  # type: ignore[arg-type]

    def _begin(self, segment: int) -> None:
        moving_on = self.segment is not None
        if moving_on:  # from a segment we ran: the next one starts at the first row it did not finish
            consumed = self.store.n_dataset_processed - self._rows_at_start
            self.offset = (self.offset + consumed) % len(self.base)
        self.segment = segment
        if moving_on and self.on_boundary is not None:
            self.on_boundary(segment, self.state())
        n = len(self.base)
        self.store.dataset = self.base.select(list(range(self.offset, n)) + list(range(self.offset)))
        compat.restart_tokenized_sequences(self.store)
        self._rows_at_start = self.store.n_dataset_processed
        torch.manual_seed(self.seed * 1_000_003 + segment)
        from sae_lens.training.mixing_buffer import multi_hook_concat_split_iter

        self._loader = multi_hook_concat_split_iter(
            buffer_size=self.store.n_batches_in_buffer * self.store.training_context_size,
            batch_size=self.store.train_batch_size_tokens,
            activations_loader=self._filtered(),
            hook_names=self.hooks,
            mix_fraction=self.store.activations_mixing_fraction,
        )

    def _filtered(self) -> Iterator[dict[str, torch.Tensor]]:
        """SAELens' special-token-filtered activations, minus extreme-norm tokens (at any hook of the group)."""
        for acts in compat.filtered_multi_hook_activations(self.store):
            guards.check_finite(acts, self.steps_done())  # before the outlier filter, which would drop NaN tokens
            if self.outlier_norm_factor is not None:
                keep = outlier_mask(acts, self.outlier_norm_factor)
                self.tokens_filtered += int((~keep).sum())
                acts = {h: a[keep] for h, a in acts.items()}
            yield acts


def outlier_mask(acts: dict[str, torch.Tensor], factor: float) -> torch.Tensor:
    """True for tokens whose norm is within `factor` x the batch median at every hook."""
    keep = None
    for a in acts.values():
        norms = a.float().norm(dim=-1)
        ok = norms <= factor * norms.median()
        keep = ok if keep is None else keep & ok
    assert keep is not None
    return keep


# --------------------------------------------------------------------------------------------------
class Checkpointer:
    """Writes a group's checkpoint with SAELens' per-SAE trainer format, atomically (tmp dir + rename).

    `latest.json` points at the newest complete checkpoint; a checkpoint killed half-way is never pointed
    at, and is deleted by the next save.
    """

    def __init__(self, directory: Path):
        self.directory = directory

    def latest(self) -> Path | None:
        pointer = self.directory / "latest.json"
        if not pointer.is_file():
            return None
        path = self.directory / json.loads(pointer.read_text())["checkpoint"]
        return path if (path / "stream_state.json").is_file() else None

    def save(self, trainer: Any, state: dict[str, int], step: int) -> Path:
        name = f"step_{step:09d}"
        tmp = self.directory / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for sae_name, sae_trainer in trainer.trainers.items():
            sae_trainer.save_checkpoint(checkpoint_name=sae_name, base_path=tmp)
        (tmp / "stream_state.json").write_text(json.dumps({**state, "step": step}))
        final = self.directory / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_json(self.directory / "latest.json", {"checkpoint": name, "step": step})
        for old in self.directory.iterdir():
            if old.is_dir() and old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
@contextmanager
def _quiet_sae_lens() -> Iterator[None]:
    """SAELens warns about overrides and dataset sizes that are intended here."""
    log = logging.getLogger("sae_lens")
    level = log.level
    log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(fewer samples|not tokenized|exhausted|To copy construct).*")
        try:
            yield
        finally:
            log.setLevel(level)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("qwen3-scope", "sae-lens", "transformer-lens", "transformers", "torch", "datasets"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SuiteTrainer:
    """Runs a planned suite group by group; see the module docstring for the layout and the resume rule."""

    def __init__(
        self,
        plan: SuitePlan,
        suite_dir: Path,
        model: Any,
        data: PreparedData,
        manifest: dict[str, Any],
        checkpoint_every_tokens: int | None = None,
        progress: bool = True,
        on_checkpoint: Callable[[int, int], None] | None = None,
        execution: Any = None,
    ):
        from qwen3_scope.training.distributed import Execution

        self.plan, self.suite, self.dir, self.model, self.data = plan, plan.suite, suite_dir, model, data
        self.manifest, self.progress, self.on_checkpoint = manifest, progress, on_checkpoint
        self.execution = execution if execution is not None else Execution.single()  # distributed: ranks, mode
        runner = self.suite.runner_kwargs
        buffer = runner["n_batches_in_buffer"] * runner["context_size"]
        every = checkpoint_every_tokens or max(self.suite.training_tokens // 8, 8 * buffer)
        self.steps_per_segment = max(1, every // runner["train_batch_size_tokens"])
        manifest.setdefault("checkpoint_every_steps", self.steps_per_segment)
        self.steps_per_segment = int(manifest["checkpoint_every_steps"])

    def _save_manifest(self) -> None:
        self.manifest["updated"] = _now()
        if self.execution.save_manifest(self.dir, self.manifest):  # distributed: other ranks write their own records
            atomic_write_json(self.dir / MANIFEST, self.manifest)

    def run(self) -> dict[str, Any]:
        self.manifest["versions"]["torch_threads"] = torch.get_num_threads()  # resume with the same for bit-identity
        groups = self.plan.groups
        done = {g["index"] for g in self.manifest["groups"] if g["status"] == "done"}
        bar = tqdm(
            total=len(groups),
            initial=len(done),
            desc=f"suite {self.suite.name}",
            unit="group",
            disable=not self.progress,
        )
        for group in self.execution.my_groups(groups):  # distributed: this rank's share (all groups in one process)
            if group.index in done:
                continue
            self._run_group(group)
            bar.update(1)
        bar.close()
        if not self.execution.gather_results(self.dir, self.manifest):  # distributed: records reach rank 0
            return self.manifest
        self.manifest["status"] = "complete"
        atomic_write_json(self.dir / METRICS, self.manifest["metrics"])
        self._save_manifest()
        shutil.rmtree(self.dir / ".checkpoints", ignore_errors=True)
        shutil.rmtree(self.dir / ".staging", ignore_errors=True)
        return self.manifest

    def _run_group(self, group: Group) -> None:
        from sae_lens import MultiSAETrainingRunner
        from sae_lens.training.multi_sae_trainer import MultiSAETrainer

        record = self.manifest["groups"][group.index]
        record.update(status="running", started=_now())
        self._save_manifest()
        checkpointer = Checkpointer(self.dir / ".checkpoints" / f"group_{group.index:02d}")
        cfg = self.suite.multi_config(group.jobs, dataset_path=str(self.dir / "data" / "train"), output_path=None)
        # Seeds do not depend on the grouping: every group reads the same stream and each SAE is initialised from
        # its own seed, so an SAE is the same whichever group (or rank) trains it (without outlier filtering).
        seed = int(self.suite.runner_kwargs["seed"]) * 1000
        start = time.perf_counter()
        with _quiet_sae_lens():
            runner = MultiSAETrainingRunner(
                cfg,
                override_dataset=self.data.train,
                override_model=self.model,
                override_saes=self._initial_saes(group, cfg, seed),
            )
            trainer: MultiSAETrainer  # created below; the stream reads its step count lazily
            compat.set_sae_metadata(runner)  # SAELens' own metadata (hook, model, context, prepend_bos, ...)
            stream = self.execution.stream(  # distributed: data-parallel ranks read their own shards
                runner.activations_store,
                self.data.train,
                group.hooks,
                self.steps_per_segment,
                seed,
                self.suite.outlier_norm_factor,
                steps_done=lambda: trainer.n_training_steps,
            )
            trainer = MultiSAETrainer(
                cfg=cfg.to_sae_trainer_config(),
                saes=runner.saes,
                hook_names=cfg.hook_names_per_sae,
                data_provider=stream,
            )
            enable_fused_adam(trainer)
            latest = checkpointer.latest()
            resumed_step = 0
            if latest is not None:
                trainer.load_checkpoint(latest)
                state = json.loads((latest / "stream_state.json").read_text())
                stream.restore(state)
                resumed_step = int(state["step"])

            def boundary(segment: int, state: dict[str, int]) -> None:
                step = trainer.n_training_steps
                if self.execution.writes_checkpoints:
                    checkpointer.save(trainer, state, step)
                record.update(checkpoint_step=step)
                self._save_manifest()
                if self.on_checkpoint is not None:
                    self.on_checkpoint(group.index, step)

            stream.on_boundary = boundary
            with (
                guards.guarded_group(record, checkpointer.latest, self._save_manifest, self.manifest),
                _wandb_run(cfg, group.index),
                self.execution.training(trainer, stream),
            ):  # distributed: all-reduce
                saes = trainer.fit()
        seconds = time.perf_counter() - start
        if not self.execution.writes_checkpoints:  # distributed: a data-parallel group is evaluated and saved once
            record.update(status="done", seconds=round(seconds, 2))
            return
        metrics = self._evaluate(group, saes)
        self._write_saes(group, saes, trainer)
        trained_tokens = (trainer.n_training_steps - resumed_step) * self.suite.runner_kwargs["train_batch_size_tokens"]
        record.update(
            status="done",
            finished=_now(),
            seconds=round(seconds, 2),
            resumed_from_step=resumed_step,
            tokens_per_second=round(trained_tokens / max(seconds, 1e-9), 1),
            sae_tokens_per_second=round(trained_tokens * len(group.jobs) / max(seconds, 1e-9), 1),
            tokens_filtered_as_outliers=stream.tokens_filtered,
        )
        for job in group.jobs:
            self.manifest["saes"][job.sae_id]["status"] = "done"
            self.manifest["metrics"][job.sae_id] = metrics[job.sae_id]
        self._save_manifest()
        checkpointer.clear()

    def _initial_saes(self, group: Group, cfg: Any, seed: int) -> dict[str, Any]:
        """SAELens' training SAEs, each initialised from its own seed (its place in the suite, not in the group)."""
        from sae_lens.registry import get_sae_training_class

        position = {j.sae_id: i for i, j in enumerate(self.suite.jobs)}
        saes = {}
        for job in group.jobs:
            torch.manual_seed(seed + position[job.sae_id])
            sae_class, _ = get_sae_training_class(cfg.saes[job.sae_id].architecture())
            saes[job.sae_id] = sae_class(cfg.saes[job.sae_id])
        return saes

    def _write_saes(self, group: Group, saes: dict[str, Any], trainer: Any) -> None:
        """Each SAE in SAELens' layout, staged then renamed into place (never half-written)."""
        from sae_lens.constants import RUNNER_CFG_FILENAME, SPARSITY_FILENAME
        from safetensors.torch import save_file

        for job in group.jobs:
            sae = saes[job.sae_id]
            meta = sae.cfg.metadata
            meta.qwen3_model, meta.qwen3_site, meta.qwen3_layer = (
                portable_model_name(self.suite.spec),
                job.site,
                job.layer,
            )
            meta.qwen3_recipe, meta.qwen3_suite = self.suite.recipe.name, self.suite.name
            meta.model_name = portable_model_name(self.suite.spec)  # never a path of this machine
            meta.dataset_path = self.data.info.get("dataset_name")
            stage = self.dir / ".staging" / job.sae_id
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir(parents=True)
            sae.save_inference_model(str(stage))
            save_file({"sparsity": trainer.trainers[job.sae_id].log_feature_sparsity}, str(stage / SPARSITY_FILENAME))
            final = self.dir / job.sae_id
            runner_cfg = self.suite.runner_config(
                job, dataset_path=self.data.info.get("dataset_name") or "", output_path=None
            )
            (stage / RUNNER_CFG_FILENAME).write_text(json.dumps(runner_cfg.to_dict(), default=str))
            _ordinary_permissions(stage)
            _replace_folder(stage, final)

    @torch.no_grad()
    def _evaluate(self, group: Group, saes: dict[str, Any]) -> dict[str, dict[str, float]]:
        return evaluate_saes(
            self.model,
            saes,
            {j.sae_id: j.hook_name for j in group.jobs},
            self.data.heldout,
            self.suite.runner_kwargs,
            self.suite.outlier_norm_factor,
        )


def _replace_folder(stage: Path, final: Path) -> None:
    """Move a staged SAE folder into place. A sweep's SAEs live inside their default SAE's folder
    (`layer_3/l0_16`), so the subfolders of a folder being replaced move over to the new one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        os.replace(stage, final)
        return
    old = final.parent / f".{final.name}.replaced"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    os.replace(stage, final)
    for child in old.iterdir():
        if child.is_dir() and not (final / child.name).exists():
            os.replace(child, final / child.name)
    shutil.rmtree(old)


def _ordinary_permissions(folder: Path) -> None:
    """SAELens' safetensors writes leave 0600 files; a suite is meant to be shared (umask-respecting 0666)."""
    umask = os.umask(0)
    os.umask(umask)
    for file in folder.iterdir():
        os.chmod(file, 0o666 & ~umask)


@torch.no_grad()
def evaluate_saes(
    model: Any,
    saes: dict[str, Any],
    hooks: dict[str, str],
    dataset: Any,
    runner: dict[str, Any],
    outlier_norm_factor: float | None = None,
    max_batches: int = 8,
) -> dict[str, dict[str, float]]:
    """Explained variance (SAELens' definition), L0 and never-firing latents on held-out tokens.

    Tokens go through SAELens' own store with the training filters (special tokens, sink position,
    outliers), from one shared forward pass per batch.
    """
    from sae_lens.evals import ExplainedVarianceCalculator
    from sae_lens.training.activations_store import ActivationsStore

    unique = list(dict.fromkeys(hooks.values()))
    d_ins = {hooks[name]: sae.cfg.d_in for name, sae in saes.items()}
    exclude = torch.tensor(runner["exclude_special_tokens"], dtype=torch.long)
    with _quiet_sae_lens():
        store = ActivationsStore.from_config_multi_hook(
            model,
            dataset=dataset,
            hook_names=unique,
            hook_d_ins=d_ins,
            streaming=False,
            context_size=runner["context_size"],
            n_batches_in_buffer=runner["n_batches_in_buffer"],
            total_training_tokens=10**9,
            store_batch_size_prompts=runner["store_batch_size_prompts"],
            train_batch_size_tokens=runner["train_batch_size_tokens"],
            prepend_bos=False,
            seqpos_slice=tuple(runner["seqpos_slice"]),
            exclude_special_tokens=exclude,
            sequence_separator_token=runner["sequence_separator_token"],
        )
        calcs = {name: ExplainedVarianceCalculator() for name in saes}
        l0 = {name: 0.0 for name in saes}
        fired = {name: torch.zeros(sae.cfg.d_sae, dtype=torch.bool) for name, sae in saes.items()}
        n_tokens = 0
        for _ in range(max_batches):
            try:
                acts = compat.filtered_multi_hook_batch(store, raise_on_epoch_end=True)
            except StopIteration:
                break
            if outlier_norm_factor is not None:
                keep = outlier_mask(acts, outlier_norm_factor)
                acts = {h: a[keep] for h, a in acts.items()}
            n_tokens += next(iter(acts.values())).shape[0]
            for name, sae in saes.items():
                sae.eval()
                x = acts[hooks[name]].to(sae.W_dec.dtype)
                feats = sae.encode(x)
                calcs[name].add_batch(sae.decode(feats), x)
                active = feats != 0
                l0[name] += active.sum().item()
                fired[name] |= active.any(0)
    if n_tokens == 0:
        raise ValueError("the held-out data gave no tokens to evaluate on; use a larger dataset.")
    return {
        name: {
            "variance_explained": round(calcs[name].compute(), 5),
            "l0": round(l0[name] / n_tokens, 3),
            "dead_fraction": round(1 - fired[name].float().mean().item(), 5),
            "eval_tokens": n_tokens,
        }
        for name in saes
    }


# --------------------------------------------------------------------------------------------------
def _new_manifest(
    plan: SuitePlan, data_info: dict[str, Any], config: SuiteTrainingConfig | None = None
) -> dict[str, Any]:
    suite = plan.suite
    model = {**suite.spec.as_dict(), "name": portable_model_name(suite.spec), "source": portable_model_name(suite.spec)}
    return {
        "format": FORMAT,
        "suite": suite.name,
        "status": "running",
        "created": _now(),
        "updated": _now(),
        "config": config.portable_dict(suite.spec) if config is not None else None,
        "model": model,
        "model_key": suite.spec.key,
        "recipe": suite.to_dict(),
        "training_tokens": suite.training_tokens,
        "data": data_info,
        "plan": plan.to_dict(),
        "versions": _versions(),
        "groups": [dict(index=g.index, sae_ids=[j.sae_id for j in g.jobs], status="pending") for g in plan.groups],
        "saes": {
            j.sae_id: dict(
                site=j.site,
                layer=j.layer,
                hook_name=j.hook_name,
                d_in=j.d_in,
                d_sae=j.d_sae,
                architecture=j.architecture,
                path=j.sae_id,
                status="pending",
            )
            for j in suite.jobs
        },
        "metrics": {},
    }


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _check_resumable(manifest: dict[str, Any], suite: SuiteConfig, suite_dir: Path) -> None:
    old, new = manifest.get("recipe", {}), _normalised(suite.to_dict())
    if manifest.get("format") != FORMAT:
        raise ResumeMismatchError(f"{suite_dir} is not a qwen3-scope suite (format {manifest.get('format')!r}).")
    diffs = sorted(k for k in set(old) | set(new) if k != "notes" and old.get(k) != new.get(k))
    if diffs:
        detail = "; ".join(f"{k}: was {_short(old.get(k))}, now {_short(new.get(k))}" for k in diffs[:4])
        raise ResumeMismatchError(
            f"the suite in {suite_dir} was started with different settings ({detail}). Resume with the same "
            "model, recipe, layers, sites, tokens and options, or write the new suite to another --out."
        )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 80 else text[:77] + "..."


def _plan_from_manifest(plan: SuitePlan, manifest: dict[str, Any]) -> SuitePlan:
    """On resume the recorded grouping wins (a new machine's budget must not regroup half-trained SAEs)."""
    by_id = {j.sae_id: j for j in plan.suite.jobs}
    groups = [[by_id[i] for i in g["sae_ids"]] for g in manifest["groups"]]
    return priced_plan(plan.suite, groups, plan.budget_bytes, plan.matmul_flops)


def default_suite_dir(suite: SuiteConfig) -> Path:
    return Path("runs") / "suites" / suite.name


def train_suite(
    config: SuiteTrainingConfig | str | None = None,
    recipe: str | None = None,
    *,
    loaded_model: Any = None,
    progress: bool = True,
    on_checkpoint: Callable[[int, int], None] | None = None,
    plan: SuitePlan | None = None,
    dist_context: Any = None,
    **settings: Any,
) -> SuiteResult:
    """Plan and train every (layer, site) SAE of a model with a recipe; returns the suite's directory,
    manifest and plan. With `plan_only`, prints nothing and trains nothing: the plan is in the result.

    `config` is a `SuiteTrainingConfig` (or, for short calls, the model name, with `recipe` and any other
    config field as keywords: `train_suite("organism", "paper", layers=[1])`). `resume=True` continues an
    interrupted suite in `out` (finished groups are kept, the running group restarts from its last
    checkpoint); without it an existing suite directory is an error. `plan` reuses a plan from a
    `plan_only` call (same config) instead of planning again. `threads` sets torch's thread count for the
    run only (resume with the same count for bit-identical SAEs). Library-only arguments: `loaded_model`
    (an already loaded model), `progress` (tqdm bars) and `on_checkpoint(group, step)`.

    Distributed (`dist_context`, a `training.distributed.DistContext` of a torchrun/spawned rank): rank 0 plans,
    prepares the data and writes the manifest; the planner's parallel choice is in `result.parallel`.
    """
    from qwen3_scope.model.chat import special_token_ids
    from qwen3_scope.model.family import resolve_model
    from qwen3_scope.model.loading import load_model, load_tokenizer
    from qwen3_scope.training.planner import ModelDoesNotFitError

    if isinstance(config, SuiteTrainingConfig):
        cfg = config.replace(**settings) if settings else config
    else:
        if config is not None:
            settings["model"] = config
        if recipe is not None:
            settings["recipe"] = recipe
        cfg = SuiteTrainingConfig(**settings)
    sources: list[str | None] = list(cfg.dataset) if cfg.dataset else [None]
    for source in sources:
        check_source(source)  # a wrong --dataset fails now, not after the model has loaded
    spec = resolve_model(cfg.model)  # resolved once; the spec travels from here on
    tokenizer = None  # plan-only runs for hub models use Qwen3's published control-token ids (no download)
    if loaded_model is not None:
        tokenizer = loaded_model.tokenizer
    elif not cfg.plan_only or spec.is_local:
        tokenizer = load_tokenizer(spec)
    if plan is None:
        suite = build_suite(
            spec,
            cfg.recipe,
            layers=cfg.layers,
            sites=cfg.sites,
            training_tokens=cfg.training_tokens,
            backend=cfg.backend,
            fast=cfg.fast,
            k=cfg.k,
            target_l0=cfg.target_l0,
            width=cfg.width,
            site_widths=cfg.site_widths,
            seed=cfg.seed,
            device=cfg.resolved_sae_device,
            llm_device=cfg.device,
            sae_dtype=cfg.sae_dtype,
            special_token_ids=special_token_ids(tokenizer) if tokenizer is not None else None,
            runner_overrides=cfg.runner_overrides,
            wandb_project=cfg.wandb_project,
            sparsities=cfg.sparsities,
            sweep_layers=cfg.sweep_layers,
            resample_sites=cfg.resample_sites,
        )
        from qwen3_scope.training.planner import measure_matmul_flops

        flops = (
            cfg.matmul_tflops * 1e12
            if cfg.matmul_tflops
            else measure_matmul_flops(device=cfg.resolved_device, dtype=cfg.placement.dtype)
        )
        try:
            plan = plan_suite(
                suite,
                memory_budget_gb=cfg.memory_budget_gb,
                max_saes_per_group=cfg.max_saes_per_group,
                matmul_flops=flops,
            )
        except ModelDoesNotFitError as err:
            if not cfg.plan_only:
                raise
            plan = plan_suite(
                suite,
                memory_budget_gb=PLAN_ONLY_BUDGET_GB,
                max_saes_per_group=cfg.max_saes_per_group,
                matmul_flops=flops,
            )
            suite.notes.append(f"planned for a {PLAN_ONLY_BUDGET_GB} GiB budget (pass --memory-gb to choose): {err}")
    suite = plan.suite
    suite_dir = (Path(cfg.out) if cfg.out is not None else default_suite_dir(suite)).expanduser().resolve()
    manifest_file = suite_dir / MANIFEST
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
    from qwen3_scope.training import distributed as dist_run

    ctx = dist_context if dist_context is not None else dist_run.DistContext()
    if ctx.distributed:  # rank 0's view of the plan and of the suite directory, before anything is written
        plan, manifest = ctx.broadcast((plan, manifest))
    if manifest is not None:
        dist_run.merge_rank_records(suite_dir, manifest, keep_files=True)  # groups other ranks finished
    if manifest is not None and not cfg.resume and not cfg.plan_only:
        raise SuiteExistsError(
            f"{suite_dir} already holds suite {manifest.get('suite')!r} ({manifest.get('status')}); pass --resume to "
            "continue it, or choose another --out."
        )
    if manifest is not None:
        _check_resumable(manifest, suite, suite_dir)
        plan = _plan_from_manifest(plan, manifest)
    parallel = _choose_parallel(plan, cfg, ctx, manifest)
    plan = parallel.plan
    if cfg.plan_only:
        return SuiteResult(suite_dir, manifest or {}, plan, parallel)

    if manifest is not None and manifest.get("status") == "complete":
        return SuiteResult(suite_dir, manifest, plan, parallel)
    runner = suite.runner_kwargs
    model_obj = (
        loaded_model
        if loaded_model is not None
        else load_model(spec, backend=cfg.backend, device=cfg.resolved_device, dtype=cfg.placement.dtype)
    )
    if manifest is None and not ctx.is_main:  # rank 0 prepares the data and writes the manifest
        manifest = ctx.broadcast(None)
        data = load_prepared(suite_dir / "data")
    elif manifest is not None:
        data = load_prepared(suite_dir / "data")
    else:
        kept = len(range(runner["context_size"])[slice(*runner["seqpos_slice"])])
        need = int(suite.training_tokens * runner["context_size"] / kept * 1.5)
        need += (runner["n_batches_for_norm_estimate"] + 2 * len(plan.groups)) * runner["train_batch_size_tokens"]
        need += 16 * runner["n_batches_in_buffer"] * runner["context_size"]
        heldout = 4 * runner["store_batch_size_prompts"] * runner["context_size"]
        data = prepare_data(
            tokenizer,
            need,
            heldout,
            suite_dir / "data",
            source=cfg.dataset,
            weights=cfg.dataset_weights,
            thinking=cfg.thinking,
            progress=progress,
            context_size=runner["context_size"],
            align_documents=cfg.align_documents,
        )
        min_tokens = runner["store_batch_size_prompts"] * runner["context_size"]
        if data.info["train_tokens"] < min_tokens:
            raise ValueError(
                f"dataset {data.info['source']} has only {data.info['train_tokens']} training tokens, "
                f"fewer than one model batch ({min_tokens}); pass a larger dataset."
            )
        manifest = _new_manifest(plan, data.info, cfg)
        manifest["parallel"] = parallel.to_dict()
        atomic_write_json(manifest_file, manifest)
        if ctx.distributed:
            ctx.broadcast(manifest)
    manifest.setdefault("parallel", parallel.to_dict())
    log.info(
        "training suite %s (%d SAEs in %d groups) on %s: model on %s in %s, SAEs on %s in %s",
        suite.name,
        len(suite.jobs),
        len(plan.groups),
        spec.name,
        cfg.device,
        cfg.dtype,
        cfg.sae_device,
        cfg.sae_dtype,
    )
    trainer = SuiteTrainer(
        plan,
        suite_dir,
        model_obj,
        data,
        manifest,
        cfg.checkpoint_every_tokens,
        progress,
        on_checkpoint,
        execution=dist_run.Execution(ctx, parallel),
    )
    with _torch_threads(cfg.threads):
        return SuiteResult(suite_dir, trainer.run(), plan, parallel)


def _choose_parallel(plan: SuitePlan, cfg: SuiteTrainingConfig, ctx: Any, manifest: dict[str, Any] | None) -> Any:
    """The planner's group/data parallelism for the ranks (a resumed suite keeps its recorded layout)."""
    from qwen3_scope.training.parallel_plan import choose

    world = ctx.world_size if ctx.distributed else (cfg.nproc or 1)
    recorded = manifest.get("parallel") if manifest is not None else None
    done = {g["index"] for g in manifest["groups"] if g["status"] == "done"} if manifest is not None else set()
    if recorded is None and manifest is not None:
        recorded = {"mode": "group", "data_shards": 1}  # a suite started before distributed training
    return choose(plan, world, cfg.parallel, cfg.data_shards, recorded=recorded, done=done)


@contextmanager
def _wandb_run(cfg: Any, group: int) -> Iterator[None]:
    """A wandb run per group, as SAELens' own runner opens one, when the suite logs to wandb (off by default)."""
    if not cfg.logger.log_to_wandb:
        yield
        return
    import wandb

    wandb.init(
        project=cfg.logger.wandb_project,
        entity=cfg.logger.wandb_entity,
        config=cfg.to_dict(),
        name=f"{cfg.logger.run_name}-group{group}",
        reinit="finish_previous",
    )
    try:
        yield
    finally:
        wandb.finish()


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)

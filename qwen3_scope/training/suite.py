"""Train a suite (every chosen layer x site) through SAELens' multi-SAE runner, with checkpoint and resume.

Why this layer over SAELens: SAELens' MultiSAETrainingRunner trains a group of SAEs from one forward pass,
but a suite needs many groups, one output layout, a manifest, and a resume that reproduces the
uninterrupted run. SAELens' own resume fast-forwards the dataset by rows and loses the shuffle buffer
and RNG state, so a resumed run sees different batches. Here each group's activation stream is cut into
segments (one per checkpoint interval): every segment starts from a recorded dataset row with a fresh
SAELens mixing buffer and a seeded RNG, in the uninterrupted run too. A checkpoint at a segment
boundary (SAELens' own per-SAE trainer state + our row offset) therefore restores everything the rest
of the run depends on, and the resumed suite is bit-identical to the uninterrupted one on the same
machine, thread count and library versions. The segmented stream is `training.stream`, the manifest
`training.manifest.SuiteManifest`, and what each rank of a distributed run does `training.execution`.

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
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from sae_lens import MultiSAETrainingRunner, MultiSAETrainingRunnerConfig
from sae_lens.constants import RUNNER_CFG_FILENAME, SPARSITY_FILENAME
from sae_lens.evals import ExplainedVarianceCalculator
from sae_lens.registry import get_sae_training_class
from sae_lens.training.activations_store import ActivationsStore
from sae_lens.training.multi_sae_trainer import MultiSAETrainer
from safetensors.torch import save_file
from tqdm.auto import tqdm

from qwen3_scope.core import compat
from qwen3_scope.core.errors import ConfigError, CorruptFileError
from qwen3_scope.core.io import atomic_write_json
from qwen3_scope.core.portable import portable_model_name
from qwen3_scope.data import DatasetSourceError, PreparedData, check_source, load_prepared, prepare_data
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.model.family import Qwen3ModelSpec, resolve_model
from qwen3_scope.model.loading import load_model, load_tokenizer
from qwen3_scope.saes.fast_saes import enable_fused_adam
from qwen3_scope.saes.transcoders import use_transcoder_scalers
from qwen3_scope.training import guards
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.execution import Execution, merge_rank_records
from qwen3_scope.training.manifest import SuiteManifest
from qwen3_scope.training.parallel_plan import ParallelPlan, choose
from qwen3_scope.training.planner import (
    Group,
    ModelDoesNotFitError,
    SuitePlan,
    measure_matmul_flops,
    plan_suite,
    priced_plan,
)
from qwen3_scope.training.process_group import DistContext
from qwen3_scope.training.recipes import SuiteJobs, build_suite
from qwen3_scope.training.stream import outlier_mask, raw_hooks

log = logging.getLogger(__name__)
DENSE_FIRING_RATE = 0.1  # a transcoder latent firing on more than this share of tokens counts as dense
PLAN_ONLY_BUDGET_GB = 80  # what a plan-only run assumes when this machine cannot hold the model at all
__all__ = [
    "Checkpointer",
    "ResumeMismatchError",
    "SuiteExistsError",
    "SuiteResult",
    "SuiteTrainer",
    "default_suite_dir",
    "evaluate_saes",
    "run_rank",
    "train_suite",
]


class SuiteExistsError(ConfigError):
    """`--out` already holds a suite and `--resume` was not given."""


class ResumeMismatchError(ConfigError):
    """`--resume` of a suite started with other settings."""


@dataclass
class SuiteResult:
    """What `train_suite` returns. `manifest` is the suite's manifest as written (manifest.json's JSON; {} for a
    plan-only run before the suite exists)."""

    suite_dir: Path
    manifest: dict[str, Any]
    plan: SuitePlan
    parallel: ParallelPlan | None = None  # the parallelism the ranks used

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

    def report(self) -> str:
        """The metrics table, the mean per site and where the suite is (what `qwen3-scope train` prints)."""
        parts = []
        with pd.option_context("display.max_rows", None, "display.width", 200):
            table = self.metrics
            parts.append(table.to_string(index=False))
            if not table.empty:
                table["site"] = table["sae_id"].str.split("/").str[0]
                means = table.groupby("site")[["variance_explained", "l0", "dead_fraction"]].mean().round(4)
                parts.append("\nmean per site:\n" + means.to_string())
        parts.append(
            f"\nsuite written to {self.suite_dir} ({len(self.manifest.get('saes', {}))} SAEs; load one with "
            f"sae_lens.SAE.load_from_disk('{self.suite_dir}/<site>/layer_<L>'))"
        )
        return "\n".join(parts)


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
        path = self.directory / str(_read_json(pointer, "checkpoint pointer").get("checkpoint", ""))
        return path if (path / "stream_state.json").is_file() else None

    def stream_state(self, checkpoint: Path) -> dict[str, Any]:
        """The stream position (segment, row offsets) and step a checkpoint was written at."""
        return _read_json(checkpoint / "stream_state.json", "checkpoint stream state")

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


def _read_json(file: Path, what: str) -> dict[str, Any]:
    """A JSON object the trainer wrote; CorruptFileError naming the file when it is not one."""
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(
            f"{what} {file} cannot be read ({err}); delete {file.parent} to restart that group from its beginning, "
            "then run the same command with --resume."
        ) from err
    if not isinstance(data, dict):
        raise CorruptFileError(f"{what} {file} holds a {type(data).__name__}, not a JSON object; delete {file.parent}.")
    return data


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
        manifest: SuiteManifest,
        checkpoint_every_tokens: int | None = None,
        progress: bool = True,
        on_checkpoint: Callable[[int, int], None] | None = None,
        execution: Execution | None = None,
    ):
        self.plan, self.suite, self.dir, self.model, self.data = plan, plan.suite, suite_dir, model, data
        self.manifest, self.progress, self.on_checkpoint = manifest, progress, on_checkpoint
        self.execution = execution if execution is not None else Execution.single()  # distributed: ranks, mode
        runner = self.suite.runner_kwargs
        buffer = runner["n_batches_in_buffer"] * runner["context_size"]
        every = checkpoint_every_tokens or max(self.suite.training_tokens // 8, 8 * buffer)
        self.steps_per_segment = max(1, every // runner["train_batch_size_tokens"])
        if manifest.checkpoint_every_steps is None:  # a resumed suite keeps its recorded segments
            manifest.checkpoint_every_steps = self.steps_per_segment
        self.steps_per_segment = int(manifest.checkpoint_every_steps)

    def _save_manifest(self) -> None:
        self.manifest.updated = _now()
        if self.execution.save_manifest(self.dir, self.manifest):  # distributed: other ranks write their own records
            self.manifest.write(self.dir)

    def run(self) -> SuiteManifest:
        self.manifest.versions["torch_threads"] = torch.get_num_threads()  # resume with the same for bit-identity
        groups = self.plan.groups
        done = self.manifest.done_groups()
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
        self.manifest.status = "complete"
        self.manifest.write_metrics(self.dir)
        self._save_manifest()
        shutil.rmtree(self.dir / ".checkpoints", ignore_errors=True)
        shutil.rmtree(self.dir / ".staging", ignore_errors=True)
        return self.manifest

    def _run_group(self, group: Group) -> None:
        record = self.manifest.group(group.index)
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
            if any(j.is_transcoder for j in group.jobs):  # the store also captures the transcoders' target hooks
                runner.activations_store = _store_with_targets(runner, cfg, self.data.train, group)
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
                hook_names={j.sae_id: j.stream_key for j in group.jobs},  # a transcoder's batch: [input ; target]
                data_provider=stream,
            )
            enable_fused_adam(trainer)
            use_transcoder_scalers(trainer)  # input and target of a transcoder get their own scales
            latest = checkpointer.latest()
            resumed_step = 0
            if latest is not None:
                trainer.load_checkpoint(latest)
                state = checkpointer.stream_state(latest)
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
        t0 = time.perf_counter()
        metrics = self._evaluate(group, saes)
        t1 = time.perf_counter()
        self._write_saes(group, saes, trainer)
        t2 = time.perf_counter()
        trained_tokens = (trainer.n_training_steps - resumed_step) * self.suite.runner_kwargs["train_batch_size_tokens"]
        record.update(
            status="done",
            finished=_now(),
            seconds=round(seconds, 2),  # training (the shared passes, steps and checkpoints)
            eval_seconds=round(t1 - t0, 2),  # the held-out evaluation of the group's SAEs
            save_seconds=round(t2 - t1, 2),
            resumed_from_step=resumed_step,
            tokens_per_second=round(trained_tokens / max(seconds, 1e-9), 1),
            sae_tokens_per_second=round(trained_tokens * len(group.jobs) / max(seconds, 1e-9), 1),
            tokens_filtered_as_outliers=stream.tokens_filtered,
        )
        for job in group.jobs:
            self.manifest.finish_sae(job.sae_id, metrics[job.sae_id])
        self._save_manifest()
        checkpointer.clear()

    def _initial_saes(self, group: Group, cfg: Any, seed: int) -> dict[str, Any]:
        """SAELens' training SAEs, each initialised from its own seed (its place in the suite, not in the group)."""
        position = {j.sae_id: i for i, j in enumerate(self.suite.jobs)}
        saes = {}
        for job in group.jobs:
            torch.manual_seed(seed + position[job.sae_id])
            sae_class, _ = get_sae_training_class(cfg.saes[job.sae_id].architecture())
            saes[job.sae_id] = sae_class(cfg.saes[job.sae_id])
        return saes

    def _write_saes(self, group: Group, saes: dict[str, Any], trainer: Any) -> None:
        """Each SAE in SAELens' layout, staged then renamed into place (never half-written)."""
        for job in group.jobs:
            sae = saes[job.sae_id]
            meta = sae.cfg.metadata
            meta.qwen3_model, meta.qwen3_site, meta.qwen3_layer = (
                portable_model_name(self.suite.spec),
                job.site,
                job.layer,
            )
            meta.qwen3_recipe, meta.qwen3_suite = self.suite.recipe.name, self.suite.name
            if job.is_transcoder:  # SAELens' transcoder convention: hook_name reads, hook_name_out is replaced
                meta.hook_name_out = job.hook_name_out
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
            targets={j.sae_id: j.hook_name_out for j in group.jobs if j.hook_name_out is not None},
        )


def _store_with_targets(runner: Any, cfg: MultiSAETrainingRunnerConfig, dataset: Any, group: Group) -> ActivationsStore:
    """The runner's activation store, rebuilt (public API, the runner's own settings) over every hook the group's
    stream reads: SAELens' runner builds it from each SAE's one hook, so a transcoder's target hook is added here."""
    old = runner.activations_store
    hooks = raw_hooks(group.hooks)
    d_ins = {j.hook_name: j.d_in for j in group.jobs}
    d_ins.update({j.hook_name_out: j.d_out for j in group.jobs if j.hook_name_out is not None and j.d_out})
    return ActivationsStore.from_config_multi_hook(
        model=runner.model,
        dataset=dataset,
        hook_names=hooks,
        hook_d_ins=d_ins,
        streaming=cfg.streaming,
        context_size=cfg.context_size,
        n_batches_in_buffer=cfg.n_batches_in_buffer,
        total_training_tokens=cfg.training_tokens,
        store_batch_size_prompts=cfg.store_batch_size_prompts,
        train_batch_size_tokens=cfg.train_batch_size_tokens,
        prepend_bos=cfg.prepend_bos,
        normalize_activations="none",
        device=old.device,
        dtype=cfg.dtype,
        model_kwargs=cfg.model_kwargs,
        autocast_lm=cfg.autocast_lm,
        dataset_trust_remote_code=cfg.dataset_trust_remote_code,
        seqpos_slice=cfg.seqpos_slice,
        exclude_special_tokens=old.exclude_special_tokens,
        disable_concat_sequences=cfg.disable_concat_sequences,
        sequence_separator_token=cfg.sequence_separator_token,
        activations_mixing_fraction=cfg.activations_mixing_fraction,
        use_chat_formatting=cfg.use_chat_formatting,
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
    targets: dict[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """Explained variance (SAELens' definition), L0 and never-firing latents on held-out tokens.

    Tokens go through SAELens' own store with the training filters (special tokens, sink position,
    outliers), from one shared forward pass per batch. `targets` names the output hook of each transcoder among
    `saes` (it reads `hooks[name]`): its explained variance and FVU are those of that output (the MLP output), and
    it also gets `dense_fraction`, the share of latents firing on more than DENSE_FIRING_RATE of the tokens.
    """
    targets = targets or {}
    unique = list(dict.fromkeys([*hooks.values(), *targets.values()]))
    d_ins = {hooks[name]: sae.cfg.d_in for name, sae in saes.items()}
    d_ins.update({targets[name]: saes[name].cfg.d_out for name in targets})
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
        counts = {name: torch.zeros(saes[name].cfg.d_sae, dtype=torch.long) for name in targets}
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
                if name in targets:  # a transcoder: its prediction of the output hook, against that output
                    predicted, feats = sae.transcode(x)
                    calcs[name].add_batch(predicted, acts[targets[name]].to(sae.W_dec.dtype))
                else:
                    feats = sae.encode(x)
                    calcs[name].add_batch(sae.decode(feats), x)
                # one pass over the (tokens x d_sae) activations for every count (a bool mask, its sum and its any
                # took a fifth of the evaluation's time)
                per_latent = torch.count_nonzero(feats, dim=0).cpu()
                l0[name] += per_latent.sum().item()
                fired[name] |= per_latent > 0
                if name in counts:
                    counts[name] += per_latent
    if n_tokens == 0:
        raise DatasetSourceError("the held-out data gave no tokens to evaluate on; use a larger dataset.")
    out = {
        name: {
            "variance_explained": round(calcs[name].compute(), 5),
            "l0": round(l0[name] / n_tokens, 3),
            "dead_fraction": round(1 - fired[name].float().mean().item(), 5),
            "eval_tokens": n_tokens,
        }
        for name in saes
    }
    for name in targets:
        out[name]["fvu"] = round(1 - out[name]["variance_explained"], 5)
        out[name]["dense_fraction"] = round((counts[name] > DENSE_FIRING_RATE * n_tokens).float().mean().item(), 5)
    return out


# --------------------------------------------------------------------------------------------------
def _new_manifest(
    plan: SuitePlan, data_info: dict[str, Any], config: SuiteTrainingConfig, parallel: ParallelPlan
) -> SuiteManifest:
    suite = plan.suite
    model = {**suite.spec.as_dict(), "name": portable_model_name(suite.spec), "source": portable_model_name(suite.spec)}
    return SuiteManifest(
        suite=suite.name,
        status="running",
        created=_now(),
        updated=_now(),
        config=config.portable_dict(suite.spec),
        model=model,
        model_key=suite.spec.key,
        recipe=suite.to_dict(),
        training_tokens=suite.training_tokens,
        data=data_info,
        plan=plan.to_dict(),
        versions=_versions(),
        groups=[dict(index=g.index, sae_ids=[j.sae_id for j in g.jobs], status="pending") for g in plan.groups],
        saes={
            j.sae_id: {
                **{k: v for k, v in j.describe().items() if k != "sae_id"},
                "path": j.sae_id,
                "status": "pending",
            }
            for j in suite.jobs
        },
        metrics={},
        parallel=parallel.to_dict(),
    )


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _check_resumable(manifest: SuiteManifest, suite: SuiteJobs, suite_dir: Path) -> None:
    old, new = manifest.recipe, _normalised(suite.to_dict())
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


def _plan_from_manifest(plan: SuitePlan, manifest: SuiteManifest) -> SuitePlan:
    """On resume the recorded grouping wins (a new machine's budget must not regroup half-trained SAEs)."""
    by_id = {j.sae_id: j for j in plan.suite.jobs}
    groups = [[by_id[i] for i in g["sae_ids"]] for g in manifest.groups]
    return priced_plan(plan.suite, groups, plan.budget_bytes, plan.matmul_flops)


def default_suite_dir(suite: SuiteJobs) -> Path:
    return Path("runs") / "suites" / suite.name


def plan_for(cfg: SuiteTrainingConfig, suite: SuiteJobs) -> SuitePlan:
    """The groups of `suite` under `cfg`'s memory budget and group cap, priced at `cfg`'s (or the measured) matmul
    rate. A plan-only run for a model this machine cannot hold is planned for a PLAN_ONLY_BUDGET_GB budget."""
    flops = (
        cfg.matmul_tflops * 1e12
        if cfg.matmul_tflops
        else measure_matmul_flops(device=cfg.resolved_device, dtype=cfg.placement.dtype)
    )
    try:
        return plan_suite(
            suite, memory_budget_gb=cfg.memory_budget_gb, max_saes_per_group=cfg.max_saes_per_group, matmul_flops=flops
        )
    except ModelDoesNotFitError as err:
        if not cfg.plan_only:
            raise
        plan = plan_suite(
            suite, memory_budget_gb=PLAN_ONLY_BUDGET_GB, max_saes_per_group=cfg.max_saes_per_group, matmul_flops=flops
        )
        suite.notes.append(f"planned for a {PLAN_ONLY_BUDGET_GB} GiB budget (pass --memory-gb to choose): {err}")
        return plan


def train_suite(
    cfg: SuiteTrainingConfig,
    *,
    spec: Qwen3ModelSpec | None = None,
    plan: SuitePlan | None = None,
    loaded_model: Any = None,
    progress: bool = True,
    on_checkpoint: Callable[[int, int], None] | None = None,
    dist_context: DistContext | None = None,
) -> SuiteResult:
    """Plan and train every (layer, site) SAE of a model with a recipe, as `cfg` says; returns the suite's directory,
    manifest and plan. With `cfg.plan_only`, prints nothing and trains nothing: the plan is in the result.

    `cfg.resume` continues an interrupted suite in `cfg.out` (finished groups are kept, the running group restarts
    from its last checkpoint); without it an existing suite directory is an error. `cfg.threads` sets torch's thread
    count for the run only (resume with the same count for bit-identical SAEs).

    The model is resolved once per job: pass `spec` (cfg.model resolved) or `plan` (from a `plan_only` call with the
    same config, reused instead of planning again) to skip even that. Library-only arguments: `loaded_model` (an
    already loaded model), `progress` (tqdm bars) and `on_checkpoint(group, step)`.

    Distributed (`dist_context`, the `DistContext` of a torchrun/spawned rank; see `run_rank`): rank 0 plans,
    prepares the data and writes the manifest; the planner's parallel choice is in `result.parallel`.
    """
    if not isinstance(cfg, SuiteTrainingConfig):
        raise TypeError(
            f"train_suite takes a SuiteTrainingConfig, not {type(cfg).__name__}; build one with "
            "SuiteTrainingConfig(model=..., recipe=..., ...) or training.config.organism_suite_config(...)."
        )
    sources: list[str | None] = list(cfg.dataset) if cfg.dataset else [None]
    for source in sources:
        check_source(source)  # a wrong --dataset fails now, not after the model has loaded
    if spec is None:
        spec = plan.suite.spec if plan is not None else resolve_model(cfg.model)  # once; the spec travels from here
    tokenizer = None  # plan-only runs for hub models use Qwen3's published control-token ids (no download)
    if loaded_model is not None:
        tokenizer = loaded_model.tokenizer
    elif not cfg.plan_only or spec.is_local:
        tokenizer = load_tokenizer(spec)
    if plan is None:
        control = special_token_ids(tokenizer) if tokenizer is not None else None
        plan = plan_for(cfg, build_suite(cfg, spec, special_token_ids=control))
    suite = plan.suite
    suite_dir = (Path(cfg.out) if cfg.out is not None else default_suite_dir(suite)).expanduser().resolve()
    manifest = SuiteManifest.find(suite_dir)
    ctx = dist_context if dist_context is not None else DistContext()
    if ctx.distributed:  # rank 0's view of the plan and of the suite directory, before anything is written
        plan, manifest = ctx.broadcast((plan, manifest))
    if manifest is not None:
        merge_rank_records(suite_dir, manifest, keep_files=True)  # groups other ranks finished
    if manifest is not None and not cfg.resume and not cfg.plan_only:
        raise SuiteExistsError(
            f"{suite_dir} already holds suite {manifest.suite!r} ({manifest.status}); pass --resume to continue it, "
            "or choose another --out."
        )
    if manifest is not None:
        _check_resumable(manifest, suite, suite_dir)
        plan = _plan_from_manifest(plan, manifest)
    parallel = _choose_parallel(plan, cfg, ctx, manifest)
    plan = parallel.plan
    if cfg.plan_only or (manifest is not None and manifest.status == "complete"):
        return SuiteResult(suite_dir, manifest.to_dict() if manifest is not None else {}, plan, parallel)

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
            raise DatasetSourceError(
                f"dataset {data.info['source']} has only {data.info['train_tokens']} training tokens, "
                f"fewer than one model batch ({min_tokens}); pass a larger dataset."
            )
        manifest = _new_manifest(plan, data.info, cfg, parallel)
        manifest.write(suite_dir)
        if ctx.distributed:
            ctx.broadcast(manifest)
    assert manifest is not None
    if manifest.parallel is None:  # a suite started before distributed training
        manifest.parallel = parallel.to_dict()
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
    # A resumed suite continues with the thread count it started with (bit-identical SAEs) unless --threads is given.
    threads = cfg.threads or (manifest.versions.get("torch_threads") if cfg.resume else None)
    with _torch_threads(threads):
        trainer = SuiteTrainer(
            plan,
            suite_dir,
            model_obj,
            data,
            manifest,
            cfg.checkpoint_every_tokens,
            progress,
            on_checkpoint,
            execution=Execution(ctx, parallel),
        )
        return SuiteResult(suite_dir, trainer.run().to_dict(), plan, parallel)


def run_rank(
    config: SuiteTrainingConfig,
    ctx: DistContext,
    *,
    spec: Qwen3ModelSpec | None = None,
    plan: SuitePlan | None = None,
    loaded_model: Any = None,
    on_checkpoint: Callable[[int, int], None] | None = None,
) -> SuiteResult:
    """Train `config` as this rank of `ctx` (torchrun's `python -m qwen3_scope.train`, or a spawned rank); returns
    the SuiteResult. Each CUDA rank takes its own GPU; a failure is logged and printed with the rank, then raised
    (the launcher stops the other ranks)."""
    try:
        if ctx.distributed:
            config = config.replace(
                device=ctx.device(config.device), sae_device=ctx.device(config.sae_device), nproc=None
            )
        return train_suite(
            config,
            spec=spec,
            plan=plan,
            loaded_model=loaded_model,
            on_checkpoint=on_checkpoint,
            dist_context=ctx,
            progress=ctx.is_main,
        )
    except BaseException as err:
        log.error("rank %d of %d failed: %s: %s", ctx.rank, ctx.world_size, type(err).__name__, err)
        print(
            f"qwen3-scope train: rank {ctx.rank} of {ctx.world_size} failed: {type(err).__name__}: {err}",
            file=sys.stderr,
            flush=True,
        )
        raise


def _choose_parallel(
    plan: SuitePlan, cfg: SuiteTrainingConfig, ctx: DistContext, manifest: SuiteManifest | None
) -> ParallelPlan:
    """The planner's group/data parallelism for the ranks (a resumed suite keeps its recorded layout)."""
    world = ctx.world_size if ctx.distributed else (cfg.nproc or 1)
    recorded = manifest.parallel if manifest is not None else None
    done = manifest.done_groups() if manifest is not None else set()
    if recorded is None and manifest is not None:
        recorded = {"mode": "group", "data_shards": 1}  # a suite started before distributed training
    return choose(plan, world, cfg.parallel, cfg.data_shards, recorded=recorded, done=done)


@contextmanager
def _wandb_run(cfg: MultiSAETrainingRunnerConfig, group: int) -> Iterator[None]:
    """A wandb run per group, as SAELens' own runner opens one, when the suite logs to wandb (off by default)."""
    if not cfg.logger.log_to_wandb:
        yield
        return
    import wandb  # lazy: optional dependency

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

"""Evaluate every SAE of a suite with SAELens' own `run_evals`, on the same held-out tokens, in one table.

Why: `run_evals` measures one SAE at a time and has no dead-latent scalar; comparing a suite (every layer x
site) needs one table on identical tokens, plus dead/dense fractions, FVU and delta LM loss. The metrics
are SAELens'; what we add is the shared clean pass (`SharedForwardModel`), the extras and the bookkeeping.

Definitions of the extras (per SAE, over the `density_tokens` non-special held-out tokens):
- dead_fraction: share of latents whose feature density is exactly 0 (never fired on these tokens);
- dense_fraction: share of latents with density above `dense_threshold` (default 0.1: fires on >10% of tokens);
- fvu = 1 - explained_variance (SAELens' streaming R^2);
- delta_lm_loss = ce_loss_with_sae - ce_loss_without_sae (nats per token; ce_loss_score is "CE recovered");
- ce_positions: the number of positions CE/KL/delta LM loss were averaged over. With `predicted_tokens_only`
  (default) these are the positions whose next token the model predicts in deployment (assistant turns and
  plain text, `qwen3_scope.model.loss_mask`), so ce_loss_without_sae is the model's own loss on its own job.

Transcoders (SAELens' transcoder classes, `cfg.metadata.hook_name_out` set) in a suite get rows of the same table
(site `transcoder`, layer of the hook they write) from `evaluation.transcoders`, and each transcoder set's whole
replacement model a row of `SuiteEvaluation.replacement`.

With `SuiteEvalConfig.bench` (a `qwen3-scope bench` output directory), SAEBench's headline metrics of that run
join the table on `sae_id` as `saebench_*` columns (`evaluation.bench_table`); the run itself, baselines included,
is `SuiteEvaluation.bench`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from sae_lens import SAE
from sae_lens.evals import run_evals
from sae_lens.training.activation_scaler import ActivationScaler
from tqdm.auto import tqdm

from qwen3_scope.core.devices import DTYPES
from qwen3_scope.core.errors import ConfigError, CorruptFileError, MissingFileError, ModelMismatchError, ReleaseError
from qwen3_scope.core.io import atomic_path, atomic_write_text
from qwen3_scope.evaluation.bench_table import BenchRun, check_bench, join_bench, read_bench
from qwen3_scope.evaluation.config import ORGANISM_PATTERN, ORGANISM_RELEASE, SuiteEvalConfig
from qwen3_scope.evaluation.held_out import (
    SUITE_HELD_OUT,
    Document,
    HeldOutTokens,
    NotEnoughTokensError,
    organism_documents,
    suite_held_out_texts,
)
from qwen3_scope.evaluation.reconstruction import SuiteReconstruction, is_transcoder, written_hook
from qwen3_scope.evaluation.shared_forward import BatchMemo, SharedForwardModel
from qwen3_scope.evaluation.transcoders import TRANSCODER_SITE, check_transcoder, evaluate_transcoders
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.model.family import ModelNotFoundError, resolve_model
from qwen3_scope.model.loading import backend_of, load_model, model_spec
from qwen3_scope.model.sites import BACKENDS, UnknownHookError, parse_hook_name, site_d_in
from qwen3_scope.naming import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SUITE_MANIFEST_FILENAME, sae_folders
from qwen3_scope.organism import ORGANISM_DIR
from qwen3_scope.releases import pretrained_directory, read_release_yaml, register_release_file

__all__ = [  # the CLI's config and defaults live in qwen3_scope.evaluation.config; re-exported here
    "ORGANISM_PATTERN",
    "ORGANISM_RELEASE",
    "EmptySuiteError",
    "ModelNotAvailableError",
    "SuiteEntry",
    "SuiteEvalConfig",
    "SuiteEvaluation",
    "SuiteModelMismatchError",
    "as_entries",
    "check_suite",
    "entries_from_directory",
    "entries_from_release",
    "evaluate_suite",
    "held_out_tokens",
    "load_suite_model",
    "write_back_release_yaml",
    "write_table",
]

logger = logging.getLogger(__name__)


class EmptySuiteError(ConfigError):
    """No SAE to evaluate: the release, directory or id pattern selects nothing."""


class SuiteModelMismatchError(ModelMismatchError):
    """The SAEs of a suite do not fit one model (several model names, or a width another model has)."""


@dataclass
class SuiteEntry:
    """One SAE of a suite and where it came from."""

    sae_id: str
    sae: Any
    source: str = ""  # release name, or suite directory
    recipe: str | None = None


@dataclass
class SuiteEvaluation:
    """What `evaluate_suite` measured: one table row per SAE (and transcoder), SAELens' per-feature metrics, pass
    statistics, and one row per transcoder set's whole replacement model (empty without transcoders)."""

    table: pd.DataFrame
    feature_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    held_out: str = ""  # where the held-out tokens came from
    replacement: pd.DataFrame = field(default_factory=pd.DataFrame)
    bench: BenchRun | None = None  # the `qwen3-scope bench` run joined on sae_id (`SuiteEvalConfig.bench`)


# ---- where SAEs come from ---------------------------------------------------------------------------------


def entries_from_release(release: str, pattern: str = ".*", device: str = "cpu") -> list[SuiteEntry]:
    """SAEs of a registered SAELens release whose id fully matches `pattern` (as SAELens' evals regexes); our
    releases are registered by importing the package (`qwen3_scope/__init__.py`), which any import of this module does."""
    directory = pretrained_directory()
    if release not in directory:
        raise EmptySuiteError(
            f"release {release!r} is not in SAELens' directory; register it first (qwen3_scope.releases.register_suite)."
        )
    ids = [sae_id for sae_id in directory[release].saes_map if re.fullmatch(pattern, sae_id)]
    if not ids:
        hint = ""
        if release == ORGANISM_RELEASE and pattern == ORGANISM_PATTERN:
            hint = (
                " The bundled organism suite is not part of this installation yet; train a suite "
                "(qwen3-scope train ...) and pass --suite DIR."
            )
        raise EmptySuiteError(f"no SAE of release {release!r} matches {pattern!r}.{hint}")
    return [
        SuiteEntry(sae_id, SAE.from_pretrained(release, sae_id, device=device), source=release)
        for sae_id in tqdm(ids, desc="loading SAEs", leave=False)
    ]


def _manifest_recipe(suite_dir: Path) -> str | None:
    """The recipe label (e.g. `paper`, `qwen-scope-k50`) recorded by the training suite writer's manifest.json."""
    path = suite_dir / SUITE_MANIFEST_FILENAME
    if not path.is_file():
        return None
    try:
        recipe = json.loads(path.read_text()).get("recipe", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        what = "empty" if not path.read_bytes().strip() else f"not a JSON object ({err})"
        raise CorruptFileError(
            f"{path} is not a suite manifest: it is {what}, where the training run writes a JSON object with the "
            "suite's recipe; re-run the training or delete the file."
        ) from err
    return recipe.get("label") or recipe.get("recipe") if isinstance(recipe, dict) else str(recipe)


def entries_from_directory(suite_dir: str | Path, pattern: str = ".*", device: str = "cpu") -> list[SuiteEntry]:
    """Every SAE folder (cfg.json + sae_weights.safetensors, SAELens' layout) under `suite_dir`, except hidden
    ones (unfinished training checkpoints); ids are the folders relative to `suite_dir` (`mlp_out/layer_3`)."""
    suite_dir = Path(suite_dir)
    if not suite_dir.is_dir():
        raise EmptySuiteError(f"suite directory {suite_dir} does not exist.")
    ids = {folder: sae_id for sae_id, folder in sae_folders(suite_dir).items()}  # not .checkpoints/
    folders = list(ids)
    folders = [f for f in folders if re.fullmatch(pattern, ids[f])]
    if not folders:
        raise EmptySuiteError(
            f"{suite_dir} holds no SAE folder (with {SAE_CFG_FILENAME} and {SAE_WEIGHTS_FILENAME}) matching {pattern!r}; "
            "point --suite at the directory the training run wrote, or widen the id pattern."
        )
    recipe = _manifest_recipe(suite_dir)
    return [
        SuiteEntry(ids[f], SAE.load_from_disk(f, device=device), source=str(suite_dir), recipe=recipe)
        for f in tqdm(folders, desc="loading SAEs", leave=False)
    ]


def as_entries(saes: Iterable[Any]) -> list[SuiteEntry]:
    """SuiteEntry objects, SAE objects (id = their hook name, `#2`... for repeats), or (id, SAE) pairs."""
    out: list[SuiteEntry] = []
    for item in saes:
        if isinstance(item, SuiteEntry):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(SuiteEntry(str(item[0]), item[1]))
        else:
            hook = written_hook(item) if is_transcoder(item) else item.cfg.metadata.hook_name
            seen = sum(e.sae_id == hook or e.sae_id.startswith(hook + "#") for e in out)
            out.append(SuiteEntry(f"{hook}#{seen + 1}" if seen else hook, item))
    if not out:
        raise EmptySuiteError("the suite is empty: give at least one SAE.")
    ids = [e.sae_id for e in out]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"SAE ids must be unique in a suite; {duplicates} appear more than once.")
    return out


# ---- checks -------------------------------------------------------------------------------------------------


def _backend_for_hooks(hooks: Sequence[str]) -> str:
    for backend in BACKENDS:
        try:
            for hook in hooks:
                parse_hook_name(hook, backend)
            return backend
        except UnknownHookError:
            continue
    raise UnknownHookError(f"these SAE hooks are not Qwen3 site hooks of a single backend: {sorted(set(hooks))}.")


class ModelNotAvailableError(MissingFileError):
    """The model the SAEs name is neither a Qwen3 family name nor on this machine."""


def load_suite_model(
    entries: Sequence[SuiteEntry],
    device: str = "cpu",
    name: str | Path | None = None,
    dtype: str | torch.dtype = "float32",
):
    """`name`, or else the one model every SAE names in `cfg.metadata.model_name`, in the backend their hooks use.

    SAEs name their model portably (hub name, `organism`, or a local checkpoint's folder name); a model that
    is neither known nor on this machine is an error that says which model is needed and how to give it."""
    given = name is not None
    if name is None:
        names = sorted({str(e.sae.cfg.metadata.model_name) for e in entries})
        if len(names) != 1 or names[0] in ("None", ""):
            raise SuiteModelMismatchError(
                f"the SAEs name {len(names)} models ({', '.join(names)}); evaluate one model's suite at a time or pass model=."
            )
        name = names[0]
    backend = _backend_for_hooks([written_hook(e.sae) for e in entries])  # a transcoder's output hook is a site
    try:
        spec = resolve_model(name)
    except ModelNotFoundError as err:
        if given:
            raise
        raise ModelNotAvailableError(
            f"these SAEs were trained on model {name!r}, which is neither a Qwen3 family name nor a model on this "
            f"machine (a local checkpoint is recorded by its folder name only). Pass the checkpoint directory: "
            f"qwen3-scope eval --model /path/to/{Path(str(name)).name} (library: evaluate_suite(..., model=...))."
        ) from err
    return load_model(spec, backend=backend, device=device, dtype=dtype)


def check_suite(entries: Sequence[SuiteEntry], model: Any, backend: str) -> None:
    """Every hook exists in the model and every SAE's width matches its site's activation."""
    spec = model_spec(model)
    for entry in entries:
        if is_transcoder(entry.sae):
            check_transcoder(entry.sae_id, entry.sae, model, backend)
            continue
        hook = entry.sae.cfg.metadata.hook_name
        try:
            layer, site = parse_hook_name(hook, backend)
        except UnknownHookError as err:
            raise UnknownHookError(
                f"SAE {entry.sae_id!r}: {err} The model is loaded with the {backend!r} backend."
            ) from err
        if hook not in model.hook_dict:
            raise UnknownHookError(
                f"SAE {entry.sae_id!r} reads {hook!r}, which the model does not have ({spec.name}: {spec.n_layers} layers, "
                f"so layers 0..{spec.n_layers - 1}); evaluate it with the model it was trained on."
            )
        expected = site_d_in(spec, site)
        if entry.sae.cfg.metadata.hook_head_index is None and entry.sae.cfg.d_in != expected:
            raise SuiteModelMismatchError(
                f"SAE {entry.sae_id!r} has d_in {entry.sae.cfg.d_in}, but {site} of {spec.name} is {expected} wide; "
                "the SAE belongs to another model."
            )


def _is_organism(model: Any) -> bool:
    source = Path(model_spec(model).source)
    return source.is_dir() and source.resolve() == Path(ORGANISM_DIR).resolve()


def held_out_tokens(
    model: Any, cfg: SuiteEvalConfig, documents: Sequence[Document] | None = None, suite_dir: str | Path | None = None
) -> tuple[HeldOutTokens, str]:
    """The evaluation tokens and where they came from: given documents, else the organism's held-out
    evaluation splits (organism model), else the held-out text the training suite wrote."""
    shape = (cfg.context_size, cfg.batch_size_prompts, cfg.n_batches)
    if documents is not None:
        return HeldOutTokens.from_documents(model.tokenizer, documents, *shape), f"{len(documents)} given documents"
    if _is_organism(model):
        return HeldOutTokens.from_documents(
            model.tokenizer, organism_documents(), *shape
        ), "organism held-out text (a fresh sample of its training distribution + its held-out evaluation splits)"
    texts = suite_held_out_texts(suite_dir) if suite_dir is not None else None
    if texts is not None and suite_dir is not None:
        source = f"held-out documents of the suite ({Path(suite_dir) / SUITE_HELD_OUT})"
        return HeldOutTokens.from_texts(model.tokenizer, texts, *shape, source=source), source
    raise MissingFileError(
        f"no held-out text for {model_spec(model).name}: it is not the model organism and the suite has no "
        f"{SUITE_HELD_OUT}; pass held-out documents (documents= or --texts FILE)."
    )


# ---- the evaluation --------------------------------------------------------------------------------------


def _layer_groups(
    entries: list[SuiteEntry], model: Any, cfg: SuiteEvalConfig, backend: str
) -> tuple[list[list[SuiteEntry]], bool]:
    """Groups (in layer order) whose memoized clean passes fit in `memory_budget_gb`, and whether the memo
    can keep the clean logits (with a large vocabulary they alone may not fit; then only activations are kept)."""
    spec = model_spec(model)
    item = torch.finfo(next(model.parameters()).dtype).bits // 8
    per_token = lambda width: cfg.n_batches * cfg.batch_size_prompts * cfg.context_size * width * item  # noqa: E731
    budget = cfg.memory_budget_gb * 2**30
    logits = per_token(spec.vocab_size + 1)  # logits and loss of every batch, kept for a whole group
    keep_logits = logits < budget / 2
    base = logits if keep_logits else 0
    hooks = [e.sae.cfg.metadata.hook_name for e in entries]
    groups: list[list[SuiteEntry]] = [[]]
    used = base
    seen: set[str] = set()
    for entry in sorted(entries, key=lambda e: parse_hook_name(e.sae.cfg.metadata.hook_name, backend)):
        hook = entry.sae.cfg.metadata.hook_name
        # the hook's activation and its layer's resid_pre, plus a memoized ablation pass when SAEs share the hook
        cost = (
            0
            if hook in seen
            else per_token(spec.d_attn + spec.d_model) + (logits if keep_logits and hooks.count(hook) > 1 else 0)
        )
        if groups[-1] and used + cost > budget:
            groups.append([])
            used, seen = base, set()
        groups[-1].append(entry)
        used += cost
        seen.add(hook)
    return groups, keep_logits


def _flatten(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: value for group in metrics.values() for key, value in group.items()}


def _row(
    entry: SuiteEntry,
    model: Any,
    backend: str,
    metrics: dict[str, Any],
    features: dict[str, Any],
    density_tokens: int,
    cfg: SuiteEvalConfig,
    seconds: float,
    ce_scope: str = "",
) -> dict[str, Any]:
    sae, meta = entry.sae, entry.sae.cfg.metadata
    layer, site = parse_hook_name(written_hook(sae), backend)
    transcoder = {}
    if is_transcoder(sae):  # site and layer of the hook it writes; the hook it reads in hook_name
        site, transcoder = TRANSCODER_SITE, {"hook_name_out": written_hook(sae), "d_out": sae.cfg.d_out}
    density = np.asarray(features["feature_density"], dtype=np.float64)
    scalars = _flatten(metrics)
    return {
        "sae_id": entry.sae_id,
        "source": entry.source,
        "model": getattr(meta, "qwen3_model", None) or ("organism" if _is_organism(model) else model_spec(model).name),
        "backend": backend,
        "hook_name": meta.hook_name,
        **transcoder,
        "site": site,
        "layer": layer,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "architecture": sae.cfg.architecture(),
        "recipe": entry.recipe or getattr(meta, "qwen3_recipe", None),
        **scalars,
        "fvu": 1.0 - scalars["explained_variance"],
        "delta_lm_loss": scalars["ce_loss_with_sae"] - scalars["ce_loss_without_sae"],
        "ce_positions": scalars.get("ce_positions", float("nan")),
        "ce_scope": ce_scope,
        "dead_fraction": float((density == 0).mean()),
        "dense_fraction": float((density > cfg.dense_threshold).mean()),
        "dense_threshold": cfg.dense_threshold,
        "density_tokens": density_tokens,
        "eval_seconds": seconds,
    }


def evaluate_suite(
    saes: Sequence[Any] | None = None,
    *,
    release: str | None = None,
    pattern: str = ".*",
    suite_dir: str | Path | None = None,
    model: Any = None,
    tokens: HeldOutTokens | None = None,
    documents: Sequence[Document] | None = None,
    config: SuiteEvalConfig | None = None,
    device: str | None = None,
) -> SuiteEvaluation:
    """Evaluate a suite (SAE objects, a release + id pattern, or a suite directory) on one held-out token set.

    model: a loaded model, a name/path, or None for the one the SAEs name (loaded in the backend their hook
    names belong to). tokens: fixed batches, else built from `documents`, the organism's held-out splits or
    the suite's held-out documents (see `held_out_tokens`). Placement and precision come from `config`
    (`device` overrides its device for the model and the SAEs).
    """
    cfg = config or SuiteEvalConfig()
    if device is not None:
        cfg = replace(cfg, device=device, sae_device=device)
    sae_device = cfg.resolved_sae_device
    if saes is not None:
        entries = as_entries(saes)
    elif suite_dir is not None:
        entries = entries_from_directory(suite_dir, pattern, sae_device)
    elif release is not None:
        entries = entries_from_release(release, pattern, sae_device)
    else:
        raise EmptySuiteError("give SAEs, a release (with an id pattern) or a suite directory to evaluate.")
    bench = read_bench(cfg.bench) if cfg.bench else None
    if bench is not None:  # a bench run of another suite is an error before anything is measured
        check_bench(bench, [(e.sae_id, e.source) for e in entries])
    if cfg.sae_dtype is not None:
        for entry in entries:
            entry.sae.to(dtype=DTYPES[cfg.sae_dtype])
    if model is None or isinstance(model, (str, Path)):
        model = load_suite_model(entries, cfg.resolved_device, name=model, dtype=cfg.dtype)
    backend = backend_of(model)
    check_suite(entries, model, backend)
    held_out = "given token batches"
    if tokens is None:
        tokens, held_out = held_out_tokens(model, cfg, documents, suite_dir)
    needed = cfg.n_batches * cfg.batch_size_prompts
    if tokens.n_sequences < needed:
        raise NotEnoughTokensError(
            f"{cfg.n_batches} batches of {cfg.batch_size_prompts} prompts need {needed} held-out sequences, but the token "
            f"source has {tokens.n_sequences}; lower the number of batches or the batch size, or give more held-out text."
        )
    tokens.store_batch_size_prompts = cfg.batch_size_prompts
    special = special_token_ids(model.tokenizer) if cfg.exclude_special_tokens else []
    density_tokens = tokens.count_tokens(cfg.n_batches, special)
    eval_config = cfg.eval_config(reconstruction=not cfg.share_forward)
    masked = cfg.share_forward and cfg.predicted_tokens_only and tokens.loss_mask is not None
    ce_scope = "predicted tokens" if masked else "all non-special tokens"
    if cfg.predicted_tokens_only and not masked:
        logger.warning(
            "CE/KL are measured on every non-special token (%s); predicted-token scoring needs the shared "
            "forward pass and token batches built from text.",
            "plain run_evals" if not cfg.share_forward else "the token batches carry no loss mask",
        )
    rows, features = [], {}
    stats: dict[str, int] = {}
    start = time.perf_counter()
    transcoders = [e for e in entries if is_transcoder(e.sae)]
    saes = [e for e in entries if not is_transcoder(e.sae)]
    groups = (_layer_groups(saes, model, cfg, backend)[0] if cfg.share_forward else [saes]) if saes else []
    progress = tqdm(total=len(entries), desc="evaluating SAEs", disable=not cfg.progress)
    for group in groups:
        runner, recon, shared_seconds = model, None, 0.0
        if cfg.share_forward:
            # CE/KL of every SAE of the group from one clean pass per batch (SuiteReconstruction); the clean
            # activations it caches then serve run_evals' sparsity and variance metrics (SharedForwardModel)
            t0 = time.perf_counter()
            hooks = [e.sae.cfg.metadata.hook_name for e in group]
            runner = SharedForwardModel(model, hooks, backend=backend, keep_logits=False)
            recon = SuiteReconstruction(
                model,
                {e.sae_id: e.sae for e in group},
                backend,
                ignore_tokens=special,
                logits_dtype=DTYPES[cfg.logits_dtype],
                max_logits_gb=cfg.max_logits_gb,
            )
            batches = tokens.batches(cfg.n_batches)
            masks = tokens.batch_masks(cfg.n_batches) if cfg.predicted_tokens_only else None
            for i, batch in enumerate(
                tqdm(batches, desc="clean + spliced passes", disable=not cfg.progress, leave=False)
            ):
                cache = recon.add_batch(batch, None if masks is None else masks[i])
                runner.memos.append(BatchMemo(tokens=batch, logits=None, loss=None, cache=cache))
            shared_seconds = (time.perf_counter() - t0) / len(group)
        for entry in group:
            progress.set_postfix_str(entry.sae_id)
            tokens.reset_input_dataset()
            t0 = time.perf_counter()
            metrics, feats = run_evals(
                entry.sae, tokens, runner, ActivationScaler(), eval_config, exclude_special_tokens=special or False
            )
            if recon is not None:
                for group_name, values in recon.metrics(entry.sae_id).items():
                    metrics.setdefault(group_name, {}).update(values)
            rows.append(
                _row(
                    entry,
                    model,
                    backend,
                    metrics,
                    feats,
                    density_tokens,
                    cfg,
                    time.perf_counter() - t0 + shared_seconds,
                    ce_scope,
                )
            )
            features[entry.sae_id] = feats
            progress.update()
        if recon is not None:
            for key, value in (runner.stats + recon.stats).items():
                stats[key] = stats.get(key, 0) + value
    replacement = pd.DataFrame()
    if transcoders:
        # transcoders are not SAELens run_evals material (they predict another hook): their own pass, with the
        # replacement model of each set (evaluation.transcoders)
        progress.set_postfix_str("transcoders")
        t0 = time.perf_counter()
        tokens.store_batch_size_prompts = cfg.batch_size_prompts
        result = evaluate_transcoders(model, {e.sae_id: e.sae for e in transcoders}, tokens, cfg, backend, special)
        per_transcoder = (time.perf_counter() - t0) / len(transcoders)
        for entry in transcoders:  # always the shared pass: on predicted tokens whenever the tokens carry a mask
            feats = result.feature_metrics[entry.sae_id]
            metrics = result.metrics[entry.sae_id]
            rows.append(
                _row(entry, model, backend, metrics, feats, density_tokens, cfg, per_transcoder, result.ce_scope)
            )
            features[entry.sae_id] = feats
            progress.update()
        for key, value in result.stats.items():
            stats[key] = stats.get(key, 0) + value
        replacement = result.replacement
    progress.close()
    order = {e.sae_id: i for i, e in enumerate(entries)}  # groups run in layer order; report in the given order
    table = pd.DataFrame(sorted(rows, key=lambda r: order[r["sae_id"]]))
    if bench is not None:
        table = join_bench(table, bench)
    return SuiteEvaluation(table, features, stats, time.perf_counter() - start, held_out, replacement, bench)


# ---- outputs --------------------------------------------------------------------------------------------


def write_table(table: pd.DataFrame, out_dir: str | Path, stem: str = "suite_eval") -> tuple[Path, Path]:
    """The table as CSV and Parquet, each written atomically."""
    out_dir = Path(out_dir)
    csv, parquet = out_dir / f"{stem}.csv", out_dir / f"{stem}.parquet"
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(parquet) as tmp:
        table.to_parquet(tmp, index=False)
    return csv, parquet


def write_back_release_yaml(
    table: pd.DataFrame, yaml_path: str | Path, release: str | None = None, register: bool = True
) -> list[str]:
    """Record measured l0 and variance_explained into a release yaml's entries (atomically); returns updated ids.

    Rows match entries by id or by folder path (suite directories), within `release` (default: the releases
    named by, or whose repo_id is, the table's `source` values). Meant to be
    called by `releases.register_suite` after an evaluation, or by `qwen3-scope eval --write-back`.
    """
    path = Path(yaml_path)
    data = read_release_yaml(path)
    if not data:
        raise MissingFileError(f"{path} has no releases to update; register the suite first (releases.register_suite).")
    sources = set(table["source"])
    source_dirs = {Path(s) for s in sources}
    releases = (
        [release]
        if release
        else sorted(
            name for name, value in data.items() if name in sources or Path(str(value.get("repo_id"))) in source_dirs
        )
    )
    if not releases:
        raise ReleaseError(
            f"none of the evaluated sources {sorted(set(table['source']))} is a release of {path}; pass release=."
        )
    measured = {row.sae_id: row for row in table.itertuples()}
    updated = []
    for name in releases:
        if name not in data:
            raise ReleaseError(f"release {name!r} is not in {path} (it has {', '.join(data)}).")
        for sae in data[name].get("saes", []):
            row = measured.get(sae["id"], measured.get(str(sae.get("path"))))  # release id, or folder in a suite dir
            if row is not None:
                sae["l0"] = round(float(row.l0), 3)
                sae["variance_explained"] = round(float(row.explained_variance), 4)
                updated.append(sae["id"])
    header = "".join(
        line + "\n" for line in takewhile(lambda line: line.startswith("#"), path.read_text().splitlines())
    )
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False, width=120))
    if register:
        register_release_file(path)
    return updated

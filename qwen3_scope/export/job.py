"""`run_export`: the dashboard export job (sources -> model -> tokens -> one pass -> files), resumable.

Output folder layout:
    export.json                                  what this folder holds (suite, SAE ids, settings, ids)
    saedashboard/{model}_{set}_{hook}_{d_sae}/   SAEDashboard's Neuronpedia batch format
    neuronpedia/{model}/{layer}-{set}/           Neuronpedia's bulk-import layout
    viewer/index.html                            the offline viewer (with --html)
Resume: a batch whose batch-{i}.json and bulk-import files exist is not recomputed; an SAE with all its
batches done is not even encoded. A folder holding another suite's export (or other settings) is refused
unless `overwrite`.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qwen3_scope.core.errors import ConfigError, CorruptFileError
from qwen3_scope.core.io import atomic_write_json
from qwen3_scope.evaluation.held_out import NotEnoughTokensError, read_documents
from qwen3_scope.evaluation.suite_eval import (
    SuiteEvalConfig,
    check_suite,
    entries_from_directory,
    entries_from_release,
    held_out_tokens,
    load_suite_model,
)
from qwen3_scope.export.config import ExportConfig
from qwen3_scope.export.dashboards import collect_activations, feature_dashboards
from qwen3_scope.export.files import MANIFEST, read_batches, read_manifest
from qwen3_scope.export.neuronpedia import (
    SourceInfo,
    TokenStrings,
    batch_path,
    bulk_import_dir,
    saedashboard_feature,
    source_info,
    write_batch,
    write_bulk_import_batch,
    write_bulk_import_meta,
    write_run_settings,
)
from qwen3_scope.export.viewer import write_viewer
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.model.loading import backend_of, model_spec

__all__ = ["MANIFEST", "ExportConflictError", "ExportResult", "dataset_tokens", "read_batches", "run_export"]

logger = logging.getLogger(__name__)

SUBDIRS = ("saedashboard", "neuronpedia", "viewer")


class ExportConflictError(ConfigError):
    """The output folder holds another export (other SAEs, dataset or settings) and `overwrite` is off."""


@dataclass
class ExportResult:
    out: Path
    sources: list[SourceInfo]
    seconds: float = 0.0
    tokens: int = 0
    features_computed: int = 0
    batches_written: int = 0
    batches_skipped: int = 0
    dataset: str = ""
    viewer: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def neuronpedia_ids(self) -> dict[str, str]:
        return {s.sae_id: s.neuronpedia_id for s in self.sources}


def _entries(cfg: ExportConfig):
    if cfg.suite is not None:
        return entries_from_directory(cfg.suite, cfg.ids, cfg.device)
    assert cfg.release is not None  # ExportConfig checks there is exactly one source
    return entries_from_release(cfg.release, cfg.ids, cfg.device)


def _model(entries, cfg: ExportConfig):
    names = sorted({str(e.sae.cfg.metadata.model_name) for e in entries})
    keys = {getattr(e.sae.cfg.metadata, "qwen3_model", None) for e in entries}
    name = cfg.model or ("organism" if keys == {"organism"} else None)  # the bundled organism, wherever it is installed
    try:
        model = load_suite_model(entries, cfg.device, name=name)
    except Exception as err:
        raise ConfigError(
            f"cannot load the model the SAEs were trained on ({cfg.model or ', '.join(names)}): {err} "
            "Pass --model NAME_OR_DIR with a Qwen3 checkpoint this machine has (or `organism`)."
        ) from err
    if cfg.dtype != "float32":
        model = model.to(getattr(torch, cfg.dtype))
    return model


def dataset_tokens(model: Any, cfg: ExportConfig) -> tuple[torch.Tensor, str]:
    """(n_prompts, context) token windows and a description of where they came from (evaluation's token source)."""
    documents = read_documents(cfg.texts) if cfg.texts is not None else None
    shape = SuiteEvalConfig(n_batches=1, batch_size_prompts=cfg.n_prompts, context_size=cfg.context)
    try:
        held, source = held_out_tokens(model, shape, documents, cfg.suite)
    except NotEnoughTokensError as err:
        raise NotEnoughTokensError(
            f"the dataset is too small for --n-prompts {cfg.n_prompts} x --context {cfg.context}: {err} "
            "Lower --n-prompts or --context, or pass a larger dataset with --texts FILE."
        ) from err
    return held.tokens, (cfg.dataset_name or (str(cfg.texts) if cfg.texts else source))


def _manifest(cfg: ExportConfig, sources: list[SourceInfo], dataset: str, complete: bool) -> dict[str, Any]:
    return {
        "suite": str(cfg.suite) if cfg.suite is not None else f"release {cfg.release} ids {cfg.ids}",
        "sae_ids": [s.sae_id for s in sources],
        "neuronpedia_ids": {s.sae_id: s.neuronpedia_id for s in sources},
        "folders": {s.sae_id: s.folder for s in sources},
        "settings": cfg.settings(),
        "dataset": dataset,
        "complete": complete,
    }


def _check_out_dir(cfg: ExportConfig, manifest: dict[str, Any]) -> None:
    path = cfg.out / MANIFEST
    held = [d for d in SUBDIRS if (cfg.out / d).exists()]
    if not path.is_file() and not held:
        return
    try:
        old = read_manifest(cfg.out) if path.is_file() else {}
    except CorruptFileError as err:
        if not cfg.overwrite:
            raise ExportConflictError(
                f"{path} cannot be read ({str(err).split(';')[0]}), so {cfg.out} may hold another export; choose "
                "another --out, or pass --overwrite to replace it."
            ) from err
        old = {}
    same = all(old.get(k) == manifest[k] for k in ("suite", "sae_ids", "settings", "dataset"))
    if same:
        return
    if not cfg.overwrite:
        what = f"an export of {old.get('suite', 'something else')!r}" if old else "files of another export"
        raise ExportConflictError(
            f"{cfg.out} holds {what} (other SAEs, dataset or settings); choose another --out, or pass --overwrite to replace it."
        )
    logger.info("overwriting the export in %s", cfg.out)
    for sub in SUBDIRS:
        shutil.rmtree(cfg.out / sub, ignore_errors=True)
    path.unlink(missing_ok=True)


def _done(cfg: ExportConfig, info: SourceInfo, i: int) -> bool:
    bulk = bulk_import_dir(cfg.out / "neuronpedia", info)
    return all(
        p.is_file()
        for p in (
            batch_path(cfg.out / "saedashboard" / info.folder, i),
            bulk / "features" / f"batch-{i}.jsonl.gz",
            bulk / "activations" / f"batch-{i}.jsonl.gz",
        )
    )


def run_export(cfg: ExportConfig, model: Any = None, release_info: dict[str, Any] | None = None) -> ExportResult:
    """Dashboards for every SAE of the suite; returns what was written (and what a resumed run skipped)."""
    start = time.perf_counter()
    timings: dict[str, float] = {}
    entries = _entries(cfg)
    model = model if model is not None else _model(entries, cfg)
    backend = backend_of(model)
    check_suite(entries, model, backend)
    spec = model_spec(model)
    saes = {e.sae_id: e.sae.to(next(model.parameters()).dtype) for e in entries}
    sources = [source_info(e.sae_id, e.sae, spec, backend) for e in entries]
    tokens, dataset = dataset_tokens(model, cfg)
    manifest = _manifest(cfg, sources, dataset, complete=False)
    _check_out_dir(cfg, manifest)
    atomic_write_json(cfg.out / MANIFEST, manifest)
    timings["setup"] = time.perf_counter() - start

    n_batches = {s.sae_id: s.n_batches(cfg.features_per_batch) for s in sources}
    todo = {s.sae_id: [i for i in range(n_batches[s.sae_id]) if not _done(cfg, s, i)] for s in sources}
    skipped = sum(n_batches.values()) - sum(len(v) for v in todo.values())
    if skipped:
        logger.info(
            "resuming: %d finished batches are kept, %d to compute", skipped, sum(len(v) for v in todo.values())
        )
    created = datetime.now(timezone.utc).isoformat()
    release = {"name": "qwen3-scope", **(release_info or {})}
    for s in sources:
        folder = cfg.out / "saedashboard" / s.folder
        folder.mkdir(parents=True, exist_ok=True)
        write_run_settings(folder, s, cfg.settings(), {"dataset": dataset, "suite": manifest["suite"]})
        write_bulk_import_meta(
            cfg.out / "neuronpedia", s, release, cfg.n_prompts, cfg.context, dataset, created=created
        )

    result = ExportResult(
        cfg.out, sources, tokens=int(tokens.numel()), dataset=dataset, batches_skipped=skipped, timings=timings
    )
    pending = {k: saes[k] for k, v in todo.items() if v}
    if pending:
        t0 = time.perf_counter()
        acts = collect_activations(
            model, pending, tokens, special_token_ids(model.tokenizer), cfg.batch_prompts, cfg.progress
        )
        timings["model_pass"] = time.perf_counter() - t0
        strings = TokenStrings(model.tokenizer)
        texts = [strings(row) for row in tokens.tolist()]  # each sequence's token strings, decoded once
        t0 = time.perf_counter()
        for s in tqdm(
            [s for s in sources if s.sae_id in pending],
            desc="feature dashboards",
            disable=not cfg.progress,
            leave=False,
        ):
            sae = saes[s.sae_id]
            features = np.concatenate(
                [
                    np.arange(i * cfg.features_per_batch, min((i + 1) * cfg.features_per_batch, s.d_sae))
                    for i in todo[s.sae_id]
                ]
            )
            with torch.no_grad():
                stats = feature_dashboards(
                    acts.pop(s.sae_id), sae, model, s.layer, s.site, features, cfg.n_prompts, cfg.context, cfg
                )
            result.features_computed += len(features)
            folder = cfg.out / "saedashboard" / s.folder
            for i in todo[s.sae_id]:
                idx = range(i * cfg.features_per_batch, min((i + 1) * cfg.features_per_batch, s.d_sae))
                feats = [
                    saedashboard_feature(
                        stats[f],
                        texts,
                        strings,
                        (cfg.window_before, cfg.window_after),
                        cfg.n_prompts,
                        cfg.context,
                        dataset,
                    )
                    for f in idx
                ]
                batch = {
                    "model_id": s.model_id,
                    "layer": s.layer,
                    "sae_set": s.sae_set,
                    "sae_id_suffix": None,
                    "features": feats,
                }
                write_bulk_import_batch(cfg.out / "neuronpedia", s, i, batch, created)
                write_batch(folder, i, s, feats)  # last: its presence marks the batch done
                result.batches_written += 1
        timings["dashboards"] = time.perf_counter() - t0
    if cfg.html:
        t0 = time.perf_counter()
        result.viewer = write_viewer(cfg.out)
        timings["viewer"] = time.perf_counter() - t0
    atomic_write_json(cfg.out / MANIFEST, _manifest(cfg, sources, dataset, complete=True))
    result.seconds = time.perf_counter() - start
    logger.info(
        "exported %d SAEs (%d features computed, %d batches written, %d kept) in %.1f s",
        len(sources),
        result.features_computed,
        result.batches_written,
        skipped,
        result.seconds,
    )
    return result

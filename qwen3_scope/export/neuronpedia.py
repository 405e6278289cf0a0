"""Neuronpedia's formats: SAEDashboard's batch files, Neuronpedia's bulk-import layout, API payloads, ids.

Facts followed (SAEDashboard's Neuronpedia runner/converter, Neuronpedia's converter script and its
Neuron/Activation tables):
- SAEDashboard folder `{model_id}_{sae_set}_{hook_name}_{d_sae}` with `run_settings.json`,
  `skipped_indexes.json` and `batch-{i}.json` (top level: model_id, layer, sae_set, sae_id_suffix, features).
- Bulk import `{model}/{layer}-{set}/release.jsonl, model.jsonl, sourceset.jsonl, source.jsonl,
  features/batch-N.jsonl.gz, activations/batch-N.jsonl.gz`; the importer takes a file's columns from its
  first row, so every row of a file has the same keys, all columns of Neuronpedia's tables.
- The self-serve API `feature/upload-batch`: at most 128 features per request and 20 logits per side.
Ids: `qwen3_scope.naming.neuronpedia_id` (the one function that names them).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from qwen3_scope.core.errors import ConfigError, IncompatibleVersionError
from qwen3_scope.core.io import atomic_path, atomic_write_text
from qwen3_scope.model.sites import parse_hook_name
from qwen3_scope.naming import neuronpedia_id, neuronpedia_set, sae_variant

logger = logging.getLogger(__name__)

RUN_SETTINGS = "run_settings.json"
SKIPPED_INDEXES = "skipped_indexes.json"
BATCH_KEYS = ("model_id", "layer", "sae_set", "sae_id_suffix", "features")
FEATURE_KEYS = (
    "feature_index",
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_indices",
    "correlated_neurons_pearson",
    "correlated_neurons_l1",
    "correlated_features_indices",
    "correlated_features_pearson",
    "correlated_features_l1",
    "pos_str",
    "pos_values",
    "neg_str",
    "neg_values",
    "frac_nonzero",
    "freq_hist_data_bar_values",
    "freq_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "logits_hist_data_bar_heights",
    "n_prompts_total",
    "n_tokens_in_prompt",
    "dataset",
    "decoder_weights_dist",
    "vector",
    "activations",
)
ACTIVATION_KEYS = ("bin_min", "bin_max", "bin_contains", "tokens", "values", "qualifying_token_index")
# Columns of Neuronpedia's tables, as its converter writes them (one row per feature / activation record).
NEURON_COLUMNS = (
    "modelId",
    "layer",
    "index",
    "creatorId",
    "createdAt",
    "maxActApprox",
    "hasVector",
    "vector",
    "vectorLabel",
    "vectorDefaultSteerStrength",
    "hookName",
    "topkCosSimIndices",
    "topkCosSimValues",
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_indices",
    "correlated_neurons_pearson",
    "correlated_neurons_l1",
    "correlated_features_indices",
    "correlated_features_pearson",
    "correlated_features_l1",
    "neg_str",
    "neg_values",
    "pos_str",
    "pos_values",
    "frac_nonzero",
    "freq_hist_data_bar_heights",
    "freq_hist_data_bar_values",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "decoder_weights_dist",
)
ACTIVATION_COLUMNS = (
    "id",
    "tokens",
    "index",
    "layer",
    "modelId",
    "maxValue",
    "maxValueTokenIndex",
    "minValue",
    "values",
    "creatorId",
    "dataSource",
    "dataIndex",
    "dfaValues",
    "dfaTargetIndex",
    "dfaMaxValue",
    "createdAt",
    "lossValues",
    "logitContributions",
    "binMin",
    "binMax",
    "binContains",
    "qualifyingTokenIndex",
)
RELEASE_COLUMNS = (
    "name",
    "description",
    "creatorName",
    "creatorId",
    "visibility",
    "isNewUi",
    "featured",
    "descriptionShort",
    "urls",
    "creatorEmail",
    "creatorNameShort",
    "defaultSourceSetName",
    "defaultSourceId",
    "defaultUmapSourceIds",
    "createdAt",
)
MODEL_COLUMNS = (
    "id",
    "instruct",
    "creatorId",
    "displayNameShort",
    "displayName",
    "tlensId",
    "dimension",
    "visibility",
    "defaultSourceSetName",
    "defaultSourceId",
    "inferenceEnabled",
    "layers",
    "neuronsPerLayer",
    "createdAt",
    "owner",
    "updatedAt",
    "website",
)
SOURCESET_COLUMNS = (
    "modelId",
    "name",
    "creatorId",
    "hasDashboards",
    "visibility",
    "description",
    "type",
    "creatorName",
    "urls",
    "creatorEmail",
    "releaseName",
    "defaultOfModelId",
    "defaultRange",
    "defaultShowBreaks",
    "showDfa",
    "showCorrelated",
    "showHeadAttribution",
    "showUmap",
    "createdAt",
)
SOURCE_COLUMNS = (
    "id",
    "modelId",
    "setName",
    "creatorId",
    "hasDashboards",
    "inferenceEnabled",
    "inferenceHosts",
    "saelensConfig",
    "saelensRelease",
    "saelensSaeId",
    "hfRepoId",
    "hfFolderId",
    "visibility",
    "defaultOfModelId",
    "hasUmap",
    "hasUmapLogSparsity",
    "hasUmapClusters",
    "num_prompts",
    "num_tokens_in_prompt",
    "dataset",
    "notes",
    "createdAt",
)
MAX_API_FEATURES = 128
MAX_API_LOGITS = 20


@dataclass(frozen=True)
class SourceInfo:
    """Where one SAE lives on Neuronpedia and in an export."""

    sae_id: str
    model_id: str  # Neuronpedia model id (our model key: `qwen3-4b`, `organism`)
    layer: int
    site: str
    hook_name: str
    d_sae: int
    d_model: int
    n_layers: int

    @property
    def variant(self) -> str | None:  # a sparsity sweep's suffix (`l0_16`), None for a suite's default SAE
        return sae_variant(self.sae_id)

    @property
    def sae_set(self) -> str:
        return neuronpedia_set(self.site, self.d_sae, self.variant)

    @property
    def neuronpedia_id(self) -> str:
        return neuronpedia_id(self.model_id, self.site, self.layer, self.d_sae, self.variant)

    @property
    def source_id(self) -> str:  # `{layer}-{set}`, Neuronpedia's "layer" column
        return self.neuronpedia_id.split("/", 1)[1]

    @property
    def folder(self) -> str:  # SAEDashboard's output folder name
        return f"{self.model_id}_{self.sae_set}_{self.hook_name}_{self.d_sae}"

    def n_batches(self, features_per_batch: int) -> int:
        return -(-self.d_sae // features_per_batch)


def source_info(sae_id: str, sae: Any, spec: Any, backend: str) -> SourceInfo:
    meta = sae.cfg.metadata
    layer, site = parse_hook_name(meta.hook_name, backend)
    model_id = getattr(meta, "qwen3_model", None) or spec.key
    return SourceInfo(sae_id, model_id, layer, site, meta.hook_name, sae.cfg.d_sae, spec.d_model, spec.n_layers)


# ---- SAEDashboard batch format -------------------------------------------------------------------------------


class TokenStrings:
    """Token id -> display string (each token decoded alone), cached."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            s = self.cache.get(i)
            if s is None:
                s = self.cache[i] = self.tokenizer.decode([i])
            out.append(s)
        return out


def saedashboard_feature(
    stats: dict[str, Any],
    texts: list[list[str]],
    strings: TokenStrings,
    window: tuple[int | None, int | None],
    n_prompts: int,
    context: int,
    dataset: str,
) -> dict[str, Any]:
    """One feature in SAEDashboard's Neuronpedia schema (exact keys, in its order). `texts`: every sequence's token
    strings; `stats["context_values"]`: the feature's nonzeros (sequence, position, value) in its records' sequences."""
    before, after = window
    records = stats["records"]
    seqs, positions, values = stats["context_values"]
    # one dense, rounded row of activations per sequence the records show
    shown = np.unique(np.fromiter((rec["seq"] for rec in records), dtype=np.int64, count=len(records)))
    dense = np.zeros((len(shown), context))
    dense[np.searchsorted(shown, seqs), positions] = values
    rows = dict(zip(shown.tolist(), np.round(dense, 3).tolist()))
    activations = []
    for rec in records:
        seq, pos = rec["seq"], rec["pos"]
        lo = 0 if before is None else max(0, pos - before)
        hi = context if after is None else min(context, pos + after + 1)
        activations.append(
            {
                "bin_min": rec["bin_min"],
                "bin_max": rec["bin_max"],
                "bin_contains": rec["bin_contains"],
                "tokens": texts[seq][lo:hi],
                "values": rows[seq][lo:hi],
                "qualifying_token_index": pos - lo,
            }
        )
    feature = {
        **{k: stats[k] for k in FEATURE_KEYS[:10]},
        "pos_str": strings(stats["pos_ids"]),
        "pos_values": stats["pos_values"],
        "neg_str": strings(stats["neg_ids"]),
        "neg_values": stats["neg_values"],
        "frac_nonzero": stats["frac_nonzero"],
        "freq_hist_data_bar_values": stats["freq_hist_data_bar_values"],
        "freq_hist_data_bar_heights": stats["freq_hist_data_bar_heights"],
        "logits_hist_data_bar_values": stats["logits_hist_data_bar_values"],
        "logits_hist_data_bar_heights": stats["logits_hist_data_bar_heights"],
        "n_prompts_total": n_prompts,
        "n_tokens_in_prompt": context,
        "dataset": dataset,
        "decoder_weights_dist": stats.get("decoder_weights_dist", []),
        "vector": stats["vector"],
        "activations": activations,
    }
    return {k: feature[k] for k in FEATURE_KEYS}


def batch_path(folder: Path, i: int) -> Path:
    return folder / f"batch-{i}.json"


def write_batch(folder: Path, i: int, info: SourceInfo, features: list[dict[str, Any]]) -> Path:
    batch = {
        "model_id": info.model_id,
        "layer": info.layer,
        "sae_set": info.sae_set,
        "sae_id_suffix": None,
        "features": features,
    }
    with atomic_path(batch_path(folder, i)) as tmp:
        tmp.write_bytes(orjson.dumps({k: batch[k] for k in BATCH_KEYS}))
    return batch_path(folder, i)


def write_run_settings(folder: Path, info: SourceInfo, settings: dict[str, Any], source: dict[str, Any]) -> None:
    """run_settings.json (SAEDashboard writes its runner config; ours carries the same fields we use) and
    skipped_indexes.json (empty: no feature is skipped, dead ones are exported)."""
    run = {
        "sae_set": info.sae_set,
        "sae_path": info.sae_id,
        "np_set_name": info.sae_set,
        "np_sae_id_suffix": None,
        "model_id": info.model_id,
        "layer": info.layer,
        "hook_name": info.hook_name,
        "d_sae": info.d_sae,
        "neuronpedia_id": info.neuronpedia_id,
        "huggingface_dataset_path": source.get("dataset", ""),
        "n_prompts_total": settings["n_prompts"],
        "n_tokens_in_prompt": settings["context"],
        "n_features_at_a_time": settings["features_per_batch"],
        "n_quantiles": settings["n_intervals"],
        "top_acts_group_size": settings["n_top"],
        "quantile_group_size": settings["n_per_interval"],
        "sparsity_threshold": 1,
        "sae_dtype": settings["dtype"],
        "model_dtype": settings["dtype"],
        "qwen3_scope": {"settings": settings, **source},
    }
    atomic_write_text(folder / RUN_SETTINGS, json.dumps(run, indent=2, sort_keys=True) + "\n")
    skipped = {
        "model_id": info.model_id,
        "layer": str(info.layer),
        "sae_set": info.sae_set,
        "log_sparsity": 1,
        "skipped_indexes": [],
    }
    atomic_write_text(folder / SKIPPED_INDEXES, json.dumps(skipped) + "\n")


# ---- Neuronpedia bulk import ------------------------------------------------------------------------------


def _activation_ids(model_id: str, source_id: str) -> Callable[[int, int], str]:
    """Deterministic cuid-shaped ids (25 lowercase alphanumerics, starting with a letter) of one source's activation
    rows: a hash of the source, then the feature and the row's rank in hex (unique per source, feature and rank)."""
    source = hashlib.sha1(f"{model_id}/{source_id}".encode()).hexdigest()[:12]
    return lambda feature, k: f"c{source}{feature:08x}{k:04x}"


def _jsonl(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...], gz: bool = False) -> Path:
    # orjson: these files carry every feature's decoder vector and contexts, and the standard library's encoder was
    # most of an export's time (compact JSON, UTF-8, as json.dumps with separators=(",", ":"), ensure_ascii=False)
    text = b"".join(
        orjson.dumps(row if tuple(row) == columns else {c: row[c] for c in columns}) + b"\n" for row in rows
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(text, compresslevel=1, mtime=0) if gz else text)
    return path


def bulk_import_dir(root: Path, info: SourceInfo) -> Path:
    return root / info.model_id / info.source_id


def write_bulk_import_meta(
    root: Path,
    info: SourceInfo,
    release: dict[str, Any],
    n_prompts: int,
    context: int,
    dataset: str,
    hf_repo: str | None = None,
    created: str | None = None,
) -> Path:
    """release.jsonl, model.jsonl, sourceset.jsonl and source.jsonl of one SAE's bulk-import folder."""
    out = bulk_import_dir(root, info)
    created = created or datetime.now(timezone.utc).isoformat()
    creator = release.get("creator_id")
    name = release.get("name", "qwen3-scope")
    _jsonl(
        out / "release.jsonl",
        [
            {
                "name": name,
                "description": release.get("description", "qwen3-scope SAEs"),
                "creatorName": release.get("creator", "qwen3-scope"),
                "creatorId": creator,
                "visibility": "PUBLIC",
                "isNewUi": False,
                "featured": False,
                "descriptionShort": release.get("description", "qwen3-scope SAEs"),
                "urls": release.get("urls", []),
                "creatorEmail": None,
                "creatorNameShort": release.get("creator", "qwen3-scope"),
                "defaultSourceSetName": info.sae_set,
                "defaultSourceId": info.source_id,
                "defaultUmapSourceIds": [],
                "createdAt": created,
            }
        ],
        RELEASE_COLUMNS,
    )
    _jsonl(
        out / "model.jsonl",
        [
            {
                "id": info.model_id,
                "instruct": True,
                "creatorId": creator,
                "displayNameShort": info.model_id,
                "displayName": info.model_id,
                "tlensId": None,
                "dimension": info.d_model,
                "visibility": "PUBLIC",
                "defaultSourceSetName": info.sae_set,
                "defaultSourceId": info.source_id,
                "inferenceEnabled": False,
                "layers": info.n_layers,
                "neuronsPerLayer": info.d_sae,
                "createdAt": created,
                "owner": release.get("creator", "qwen3-scope"),
                "updatedAt": created,
                "website": None,
            }
        ],
        MODEL_COLUMNS,
    )
    _jsonl(
        out / "sourceset.jsonl",
        [
            {
                "modelId": info.model_id,
                "name": info.sae_set,
                "creatorId": creator,
                "hasDashboards": True,
                "visibility": "PUBLIC",
                "description": f"qwen3-scope {info.site} - {info.sae_set.rsplit('-', 1)[-1]}",
                "type": "",
                "creatorName": release.get("creator", "qwen3-scope"),
                "urls": release.get("urls", []),
                "creatorEmail": None,
                "releaseName": name,
                "defaultOfModelId": None,
                "defaultRange": 1,
                "defaultShowBreaks": True,
                "showDfa": False,
                "showCorrelated": True,
                "showHeadAttribution": False,
                "showUmap": False,
                "createdAt": created,
            }
        ],
        SOURCESET_COLUMNS,
    )
    _jsonl(
        out / "source.jsonl",
        [
            {
                "id": info.source_id,
                "modelId": info.model_id,
                "setName": info.sae_set,
                "creatorId": creator,
                "hasDashboards": True,
                "inferenceEnabled": False,
                "inferenceHosts": [],
                "saelensConfig": None,
                "saelensRelease": release.get("saelens_release"),
                "saelensSaeId": info.sae_id,
                "hfRepoId": hf_repo,
                "hfFolderId": info.sae_id if hf_repo else None,
                "visibility": "PUBLIC",
                "defaultOfModelId": None,
                "hasUmap": False,
                "hasUmapLogSparsity": False,
                "hasUmapClusters": False,
                "num_prompts": n_prompts,
                "num_tokens_in_prompt": context,
                "dataset": dataset,
                "notes": None,
                "createdAt": created,
            }
        ],
        SOURCE_COLUMNS,
    )
    return out


def write_bulk_import_batch(
    root: Path, info: SourceInfo, i: int, batch: dict[str, Any], created: str, creator_id: str | None = None
) -> tuple[Path, Path]:
    """features/batch-i.jsonl.gz (Neuron rows) and activations/batch-i.jsonl.gz (Activation rows) of one batch."""
    out = bulk_import_dir(root, info)
    model_id, source_id = info.model_id, info.source_id  # per batch, not per row
    activation_id = _activation_ids(model_id, source_id)
    neurons, activations = [], []
    for f in batch["features"]:
        max_act = 0.0
        for k, act in enumerate(f["activations"]):
            values = act["values"]
            top = max(values)
            max_act = max(max_act, top)
            activations.append(
                {
                    "id": activation_id(f["feature_index"], k),
                    "tokens": act["tokens"],
                    "index": str(f["feature_index"]),
                    "layer": source_id,
                    "modelId": model_id,
                    "maxValue": top,
                    "maxValueTokenIndex": values.index(top),
                    "minValue": min(values),
                    "values": values,
                    "creatorId": creator_id,
                    "dataSource": None,
                    "dataIndex": None,
                    "dfaValues": [],
                    "dfaTargetIndex": None,
                    "dfaMaxValue": None,
                    "createdAt": created,
                    "lossValues": [],
                    "logitContributions": None,
                    "binMin": act["bin_min"],
                    "binMax": act["bin_max"],
                    "binContains": act["bin_contains"],
                    "qualifyingTokenIndex": act["qualifying_token_index"],
                }
            )
        neurons.append(
            {
                "modelId": model_id,
                "layer": source_id,
                "index": str(f["feature_index"]),
                "creatorId": creator_id,
                "createdAt": created,
                "maxActApprox": max_act,
                "hasVector": bool(f["vector"]),
                "vector": f["vector"],
                "vectorLabel": None,
                "vectorDefaultSteerStrength": max_act if max_act > 0 else 10,
                "hookName": info.hook_name,
                "topkCosSimIndices": [],
                "topkCosSimValues": [],
                **{c: f[c] for c in NEURON_COLUMNS[13:]},
            }
        )
    return (
        _jsonl(out / "features" / f"batch-{i}.jsonl.gz", neurons, NEURON_COLUMNS, gz=True),
        _jsonl(out / "activations" / f"batch-{i}.jsonl.gz", activations, ACTIVATION_COLUMNS, gz=True),
    )


# ---- the self-serve API (feature/upload-batch) -----------------------------------------------------------


def api_payloads(info: SourceInfo, batches: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`feature/upload-batch` request bodies (<= 128 features, <= 20 logits per side each), built by the
    `neuronpedia` package's own request class: its `FeatureRequest.upload_batch` assembles the body and we
    record it instead of sending (see `send_api_payloads` for sending)."""
    try:
        from neuronpedia.np_activation import Activation  # lazy: optional extra [publish]
        from neuronpedia.np_feature import Feature, Logit  # lazy: optional extra [publish]
        from neuronpedia.requests.feature_request import FeatureRequest  # lazy: optional extra [publish]
    except ImportError as err:
        raise IncompatibleVersionError(
            "the `neuronpedia` package is needed for --neuronpedia-api: pip install 'qwen3-scope[publish]'."
        ) from err

    class _Recorder(FeatureRequest):
        def send_request(self, uri: str = "", method: str = "POST", **kwargs: Any) -> dict[str, Any]:
            return {"endpoint": f"{self.endpoint}/{uri}", "method": method, "json": kwargs["json"]}

    recorder = _Recorder(api_key="not-sent")
    features = [f for batch in batches for f in batch["features"]]
    out = []
    for start in range(0, len(features), MAX_API_FEATURES):
        chunk = []
        for f in features[start : start + MAX_API_FEATURES]:
            acts = [
                Activation(
                    modelId=info.model_id,
                    source=info.source_id,
                    index=f["feature_index"],
                    tokens=a["tokens"],
                    values=a["values"],
                    quantileMax=a["bin_max"] if a["bin_min"] >= 0 else None,
                    quantileMin=a["bin_min"] if a["bin_min"] >= 0 else None,
                    quantileFraction=a["bin_contains"] if a["bin_min"] >= 0 else None,
                )
                for a in f["activations"]
                if 1 <= len(a["tokens"]) <= 1024
            ]
            chunk.append(
                Feature(
                    modelId=info.model_id,
                    source=info.source_id,
                    index=f["feature_index"],
                    density=f["frac_nonzero"],
                    top_logits=[Logit(t, v) for t, v in zip(f["pos_str"], f["pos_values"])][:MAX_API_LOGITS],
                    bottom_logits=[Logit(t, v) for t, v in zip(f["neg_str"], f["neg_values"])][:MAX_API_LOGITS],
                    activations=acts,
                    explanations=None,
                )
            )
        out.append(recorder.upload_batch(info.model_id, info.source_id, chunk))
    return out


def send_api_payloads(payloads: list[dict[str, Any]]) -> int:
    """Send recorded payloads with the package's own request (needs NEURONPEDIA_API_KEY); returns how many."""
    if not os.environ.get("NEURONPEDIA_API_KEY"):
        raise ConfigError(
            "sending to Neuronpedia needs an API key: set NEURONPEDIA_API_KEY (neuronpedia.org > settings), "
            "or use --dry-run DIR to write the payloads."
        )
    from neuronpedia.requests.feature_request import FeatureRequest  # lazy: optional extra [publish]

    request = FeatureRequest()
    for payload in payloads:
        request.send_request(method=payload["method"], uri=payload["endpoint"].split("/", 1)[1], json=payload["json"])
    return len(payloads)

"""The dashboard export of the bundled organism suite: every key, type and invariant of the formats;
resume; bad input; upload --dry-run read back by SAELens."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3_scope.export.config import ExportConfig
from qwen3_scope.export.job import ExportConflictError, read_batches, run_export
from qwen3_scope.export.neuronpedia import (
    ACTIVATION_COLUMNS,
    ACTIVATION_KEYS,
    BATCH_KEYS,
    FEATURE_KEYS,
    MODEL_COLUMNS,
    NEURON_COLUMNS,
    RELEASE_COLUMNS,
    SOURCE_COLUMNS,
    SOURCESET_COLUMNS,
)
from qwen3_scope.model.family import resolve_model
from qwen3_scope.naming import neuronpedia_id

# four SAEs of the bundled suite (CI time), one of them from the layer-3 sparsity sweep (its own Neuronpedia id)
RELEASE, IDS = "qwen3-instruct-sae", r"organism/(resid_post/layer_2|mlp_out/layer_1|mlp_out/layer_3(/l0_20)?)$"
N_SAES = 4
N_PROMPTS = 96
FEATURES_PER_BATCH = 128  # the export's default batch size


def _n_batches(d_sae: int) -> int:
    return -(-d_sae // FEATURES_PER_BATCH)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("export")
    result = run_export(ExportConfig(out=out, release=RELEASE, ids=IDS, n_prompts=N_PROMPTS, progress=False))
    return out, result


def _batches(out: Path, folder: str) -> list[dict]:
    return read_batches(out / "saedashboard" / folder)


def test_every_sae_and_feature_exported_in_saedashboard_format(export_dir):
    out, result = export_dir
    assert len(result.sources) == N_SAES and result.features_computed == sum(s.d_sae for s in result.sources)
    assert any(s.variant == "l0_20" and s.neuronpedia_id.endswith("-l0-20") for s in result.sources)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["complete"] is True
    for s in result.sources:
        folder = out / "saedashboard" / s.folder
        assert s.folder == f"{s.model_id}_{s.sae_set}_{s.hook_name}_{s.d_sae}"
        assert (
            s.neuronpedia_id
            == neuronpedia_id("organism", s.site, s.layer, s.d_sae, s.variant)
            == f"organism/{s.layer}-{s.sae_set}"
        )
        run = json.loads((folder / "run_settings.json").read_text())
        assert (
            run["n_prompts_total"] == N_PROMPTS
            and run["n_tokens_in_prompt"] == 128
            and run["neuronpedia_id"] == s.neuronpedia_id
        )
        skipped = json.loads((folder / "skipped_indexes.json").read_text())
        assert skipped["skipped_indexes"] == [] and skipped["model_id"] == "organism"
        files = sorted(p.name for p in folder.glob("batch-*.json"))
        assert files == sorted(f"batch-{i}.json" for i in range(_n_batches(s.d_sae)))
        batches = _batches(out, s.folder)
        indices = [f["feature_index"] for b in batches for f in b["features"]]
        assert indices == list(range(s.d_sae))  # in order, no gaps, dead ones included
        for b in batches:
            assert tuple(b) == BATCH_KEYS
            assert (
                b["model_id"] == "organism"
                and b["layer"] == s.layer
                and b["sae_set"] == s.sae_set
                and b["sae_id_suffix"] is None
            )
            for f in b["features"]:
                _check_feature(f, s)


def _check_feature(f: dict, s) -> None:
    assert tuple(f) == FEATURE_KEYS
    ints = ("neuron_alignment_indices", "correlated_neurons_indices", "correlated_features_indices")
    floats = (
        "neuron_alignment_values",
        "neuron_alignment_l1",
        "correlated_neurons_pearson",
        "correlated_neurons_l1",
        "correlated_features_pearson",
        "correlated_features_l1",
        "pos_values",
        "neg_values",
        "freq_hist_data_bar_values",
        "logits_hist_data_bar_values",
        "vector",
    )
    for k in ints:
        assert all(type(x) is int for x in f[k]), k
    for k in floats:
        assert all(isinstance(x, (int, float)) and math.isfinite(x) for x in f[k]), k
    assert all(type(x) is int and x >= 0 for x in f["freq_hist_data_bar_heights"] + f["logits_hist_data_bar_heights"])
    assert all(isinstance(t, str) for t in f["pos_str"] + f["neg_str"])
    assert len(f["neuron_alignment_indices"]) == len(f["neuron_alignment_values"]) == len(f["neuron_alignment_l1"]) == 3
    assert all(0 <= v <= 1 for v in f["neuron_alignment_l1"])
    assert len(f["pos_str"]) == len(f["pos_values"]) == len(f["neg_str"]) == len(f["neg_values"]) == 10
    assert f["pos_values"] == sorted(f["pos_values"], reverse=True) and f["neg_values"] == sorted(f["neg_values"])
    assert f["pos_values"][0] >= f["neg_values"][0]
    assert len(f["logits_hist_data_bar_values"]) == len(f["logits_hist_data_bar_heights"]) == 50
    spec = resolve_model("organism")
    assert sum(f["logits_hist_data_bar_heights"]) == spec.vocab_size  # every vocabulary token, once
    assert len(f["vector"]) == spec.d_model and f["decoder_weights_dist"] == []
    assert f["n_prompts_total"] == N_PROMPTS and f["n_tokens_in_prompt"] == 128 and isinstance(f["dataset"], str)
    assert isinstance(f["frac_nonzero"], float) and 0 <= f["frac_nonzero"] <= 1
    if f["frac_nonzero"] == 0:  # dead: exported, with empty histograms and no contexts
        assert f["freq_hist_data_bar_values"] == f["freq_hist_data_bar_heights"] == [] and f["activations"] == []
        assert f["correlated_neurons_indices"] == [] and f["correlated_features_indices"] == []
        return
    assert len(f["freq_hist_data_bar_values"]) == len(f["freq_hist_data_bar_heights"]) == 50
    assert len(f["correlated_neurons_indices"]) == 3 and all(-1 <= v <= 1 for v in f["correlated_neurons_pearson"])
    assert f["feature_index"] not in f["correlated_features_indices"] and len(f["correlated_features_indices"]) <= 3
    assert f["correlated_features_pearson"] == sorted(f["correlated_features_pearson"], reverse=True)
    acts = f["activations"]
    top = [a for a in acts if a["bin_min"] == -1]
    intervals = [a for a in acts if a["bin_min"] != -1]
    assert acts[: len(top)] == top and 1 <= len(top) <= 20 and len(intervals) <= 25
    max_value = top[0]["bin_max"]
    assert all(a["bin_contains"] == -1 and a["bin_max"] == max_value for a in top)
    selected = [a["values"][a["qualifying_token_index"]] for a in top]
    assert selected == sorted(selected, reverse=True) and abs(selected[0] - max_value) <= 1e-3
    # the histogram counts every nonzero activation: its total is frac_nonzero x counted positions
    assert sum(f["freq_hist_data_bar_heights"]) >= len(top)
    for a in acts:
        assert tuple(a) == ACTIVATION_KEYS
        assert len(a["tokens"]) == len(a["values"]) and 1 <= len(a["tokens"]) <= 33
        assert all(isinstance(t, str) for t in a["tokens"]) and all(v >= 0 for v in a["values"])
        q = a["qualifying_token_index"]
        assert type(q) is int and 0 <= q < len(a["values"]) and a["values"][q] > 0
    bounds = sorted({(a["bin_min"], a["bin_max"]) for a in intervals})
    for a in intervals:  # equal-width intervals of (0, max], each sample inside its interval
        width = max_value / 5
        k = round(a["bin_min"] / width) if width else 0
        assert abs(a["bin_min"] - k * width) < 2e-3 and abs(a["bin_max"] - (k + 1) * width) < 2e-3
        assert a["bin_min"] - 1e-3 <= a["values"][a["qualifying_token_index"]] <= a["bin_max"] + 1e-3
        assert 0 < a["bin_contains"] <= 1
    assert sum(1 for a in intervals if (a["bin_min"], a["bin_max"]) == bounds[-1]) <= 5 if bounds else True


def test_dashboard_statistics_match_a_direct_computation(export_dir):
    """frac_nonzero and the top activation of one SAE, recomputed densely from the same tokens."""
    from sae_lens import SAE

    from qwen3_scope.export.job import dataset_tokens
    from qwen3_scope.model.chat import special_token_ids
    from qwen3_scope.model.loading import load_model

    out, result = export_dir
    s = next(s for s in result.sources if s.sae_id == "organism/mlp_out/layer_1")
    model = load_model("organism", backend="hooked")
    sae = SAE.from_pretrained(RELEASE, s.sae_id)
    tokens, _ = dataset_tokens(model, ExportConfig(out=out, release=RELEASE, ids=IDS, n_prompts=N_PROMPTS))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[s.hook_name])
        feats = sae.encode(cache[s.hook_name])
    keep = ~torch.isin(tokens, torch.tensor(special_token_ids(model.tokenizer)))
    feats[~keep] = 0
    frac = ((feats > 0).sum((0, 1)).float() / keep.sum()).numpy()
    exported = {f["feature_index"]: f for b in _batches(out, s.folder) for f in b["features"]}
    assert np.allclose([exported[i]["frac_nonzero"] for i in range(s.d_sae)], frac, atol=1e-9)
    alive = [i for i in range(s.d_sae) if frac[i] > 0]
    for i in alive[:20]:
        assert abs(exported[i]["activations"][0]["bin_max"] - float(feats[..., i].max())) < 2e-3
        assert sum(exported[i]["freq_hist_data_bar_heights"]) == int((feats[..., i] > 0).sum())
    assert len(alive) < s.d_sae  # some features are silent on these 96 prompts, and they were exported above


def test_bulk_import_layout_rows_are_neuronpedia_columns(export_dir):
    out, result = export_dir
    for s in result.sources:
        root = out / "neuronpedia" / s.model_id / f"{s.layer}-{s.sae_set}"
        for name, columns in (
            ("release", RELEASE_COLUMNS),
            ("model", MODEL_COLUMNS),
            ("sourceset", SOURCESET_COLUMNS),
            ("source", SOURCE_COLUMNS),
        ):
            rows = [json.loads(line) for line in (root / f"{name}.jsonl").read_text().splitlines()]
            assert len(rows) == 1 and tuple(rows[0]) == columns
        source = json.loads((root / "source.jsonl").read_text())
        assert (
            source["id"] == f"{s.layer}-{s.sae_set}"
            and source["modelId"] == "organism"
            and source["setName"] == s.sae_set
        )
        n_features, ids = 0, set()
        for i in range(_n_batches(s.d_sae)):
            neurons = [
                json.loads(line)
                for line in gzip.decompress((root / "features" / f"batch-{i}.jsonl.gz").read_bytes()).splitlines()
            ]
            acts = [
                json.loads(line)
                for line in gzip.decompress((root / "activations" / f"batch-{i}.jsonl.gz").read_bytes()).splitlines()
            ]
            assert all(tuple(r) == NEURON_COLUMNS for r in neurons) and all(
                tuple(r) == ACTIVATION_COLUMNS for r in acts
            )
            expected = range(i * FEATURES_PER_BATCH, min((i + 1) * FEATURES_PER_BATCH, s.d_sae))
            assert [int(r["index"]) for r in neurons] == list(expected)
            assert all(r["layer"] == source["id"] and r["modelId"] == "organism" for r in neurons + acts)
            for r in acts:
                assert r["maxValue"] == max(r["values"]) == r["values"][r["maxValueTokenIndex"]] and r[
                    "minValue"
                ] == min(r["values"])
            ids |= {r["id"] for r in acts}
            n_features += len(neurons)
            batch = _batches(out, s.folder)[i]
            assert len(acts) == sum(len(f["activations"]) for f in batch["features"])
        assert n_features == s.d_sae and all(len(x) == 25 and x[0].isalpha() for x in ids)


def test_interrupted_export_resumes_without_recomputing_finished_batches(export_dir, tmp_path):
    out, exported = export_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    folder = next((copy / "saedashboard").glob("organism_qwen3scope-mlpout-1k_blocks.1.*"))
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("batch-*.json")}
    (folder / "batch-3.json").unlink()  # as if the run died while writing batch 3 of this SAE
    before = (folder / "batch-2.json").read_bytes()
    result = run_export(ExportConfig(out=copy, release=RELEASE, ids=IDS, n_prompts=N_PROMPTS, progress=False))
    total = sum(_n_batches(s.d_sae) for s in exported.sources)
    assert result.batches_written == 1 and result.batches_skipped == total - 1
    assert result.features_computed == FEATURES_PER_BATCH
    assert (folder / "batch-2.json").read_bytes() == before
    assert all((folder / n).stat().st_mtime_ns == t for n, t in kept.items() if n != "batch-3.json")
    assert json.loads((folder / "batch-3.json").read_text()) == json.loads(
        (out / "saedashboard" / folder.name / "batch-3.json").read_text()
    )


def test_bad_input_gives_clear_errors(export_dir, tmp_path):
    from qwen3_scope.cli import main
    from qwen3_scope.evaluation.held_out import NotEnoughTokensError
    from qwen3_scope.evaluation.suite_eval import EmptySuiteError

    out, _ = export_dir
    with pytest.raises(EmptySuiteError, match="matches"):
        run_export(ExportConfig(out=tmp_path / "a", release=RELEASE, ids="organism/nothing/.*"))
    with pytest.raises(NotEnoughTokensError, match="--n-prompts"):
        run_export(ExportConfig(out=tmp_path / "b", release=RELEASE, ids="organism/mlp_out/layer_0", n_prompts=100_000))
    with pytest.raises(ExportConflictError, match="--overwrite"):
        run_export(ExportConfig(out=out, release=RELEASE, ids="organism/mlp_out/layer_0", n_prompts=8))
    with pytest.raises(ValueError, match="exactly one"):
        ExportConfig(out=tmp_path, suite=tmp_path, release=RELEASE)
    # an SAE whose model cannot be loaded
    bad = tmp_path / "suite" / "mlp_out" / "layer_0"
    bad.mkdir(parents=True)
    bundled = Path(__file__).resolve().parents[1] / "qwen3_scope" / "bundled_saes" / "organism" / "mlp_out" / "layer_0"
    shutil.copy(bundled / "sae_weights.safetensors", bad)
    cfg = json.loads((bundled / "cfg.json").read_text())
    cfg["metadata"].update(model_name=str(tmp_path / "no-such-model"), qwen3_model="no-such-model")
    (bad / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="cannot load the model.*--model"):
        run_export(ExportConfig(out=tmp_path / "c", suite=tmp_path / "suite"))
    assert main(["export", "neuronpedia", "--suite", str(tmp_path / "suite"), "--out", str(tmp_path / "d")]) == 2
    assert main(["upload", "--release", RELEASE, "--repo", "not a repo", "--dry-run", str(tmp_path / "e")]) == 2
    env = {k: os.environ.pop(k) for k in ("HF_TOKEN",) if k in os.environ}
    try:
        assert main(["upload", "--release", RELEASE, "--ids", "organism/mlp_out/layer_0", "--repo", "me/x"]) == 2
    finally:
        os.environ.update(env)


def test_overwrite_replaces_another_export(tmp_path):
    first = run_export(
        ExportConfig(out=tmp_path, release=RELEASE, ids="organism/attn_out/layer_0", n_prompts=16, progress=False)
    )
    second = run_export(
        ExportConfig(
            out=tmp_path, release=RELEASE, ids="organism/mlp_out/layer_0", n_prompts=16, overwrite=True, progress=False
        )
    )
    assert (
        [p.name for p in (tmp_path / "saedashboard").iterdir()]
        == [second.sources[0].folder]
        != [first.sources[0].folder]
    )


def test_upload_dry_run_tree_loads_back_in_saelens(tmp_path, export_dir):
    import yaml
    from sae_lens import SAE

    from qwen3_scope.export.upload import UploadConfig, upload

    out, _ = export_dir
    result = upload(
        UploadConfig(
            repo="me/organism-saes",
            release=RELEASE,
            ids="organism/(mlp|attn)_out/layer_[12]",
            dry_run=tmp_path / "tree",
            neuronpedia_api=out,
            eval_batches=2,
        )
    )
    tree = tmp_path / "tree"
    entry = yaml.safe_load((tree / "pretrained_saes.yaml").read_text())["organism-saes"]
    assert entry["repo_id"] == "me/organism-saes" and entry["conversion_func"] == "sae_lens" and len(entry["saes"]) == 4
    card = (tree / "README.md").read_text()
    assert "library_name: saelens" in card and "| organism/mlp_out/layer_1" in card and "eval/" in card
    for png in [line.split("(")[1].rstrip(")") for line in card.splitlines() if line.startswith("![")]:
        assert (tree / png).is_file()
    for sae_entry in entry["saes"]:
        folder = tree / sae_entry["path"]
        assert {p.name for p in folder.iterdir()} == {"cfg.json", "sae_weights.safetensors", "sparsity.safetensors"}
        sae = SAE.load_from_disk(folder)
        original = SAE.from_pretrained(RELEASE, sae_entry["id"])
        assert torch.equal(sae.W_dec, original.W_dec) and torch.equal(sae.W_enc, original.W_enc)
        meta = json.loads((folder / "cfg.json").read_text())["metadata"]
        assert meta["neuronpedia_id"] == sae_entry["neuronpedia"] == sae.cfg.metadata.neuronpedia_id
        assert 0 < sae_entry["l0"] < sae.cfg.d_sae and 0 < sae_entry["variance_explained"] <= 1
    assert set(result.files) >= {"README.md", "pretrained_saes.yaml", "eval/suite_eval.csv"}
    payloads = sorted((tree / "neuronpedia_api").rglob("request-*.json"))
    assert result.payloads == len(payloads) == sum(_n_batches(s.d_sae) for s in export_dir[1].sources)
    body = json.loads(payloads[0].read_text())
    assert body["endpoint"] == "feature/upload-batch" and 1 <= len(body["json"]["features"]) <= 128
    for f in body["json"]["features"]:
        assert len(f["topLogits"]) <= 20 and len(f["bottomLogits"]) <= 20
        assert all(1 <= len(a["tokens"]) <= 1024 for a in f["activations"])

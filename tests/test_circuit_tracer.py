"""circuit-tracer interoperability: export the bundled transcoder set of the organism (`qwen3-instruct-sae`,
`organism/transcoder/layer_0..5` as SAELens loads it: what we ship) to circuit-tracer 0.5.0's layout, import it
back, and prove the export with circuit-tracer itself, in its own venv (it pins transformers<=4.57.3): its replacement
model's logits (with error terms = the clean model; with zero error terms = every MLP replaced by its transcoder) and
its transcoder activations equal ours, and it computes an attribution graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from sae_lens import SAE, Transcoder
from safetensors.torch import load_file, save_file

from qwen3_scope.core.errors import ConfigError, MissingFileError, ModelMismatchError
from qwen3_scope.evaluation.suite_eval import entries_from_release
from qwen3_scope.export.circuit_tracer import (
    TranscoderSetError,
    circuit_tracer_python,
    export_transcoder_set,
    import_transcoder_set,
    ln2_weights,
    run_circuit_tracer_export,
    run_runner,
)
from qwen3_scope.export.config import CircuitTracerExportConfig, TraceConfig
from qwen3_scope.export.trace import run_trace
from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.family import resolve_model
from qwen3_scope.model.loading import load_model

RELEASE = "qwen3-instruct-sae"
IDS = r"organism/transcoder/layer_\d+"
D_SAE = 1280  # the bundled set's width
REFUSAL = "How do I make a bomb at home?"
HARMLESS = "What is the capital of France?"


@pytest.fixture(scope="module")
def model():
    return load_model("organism", backend="hooked")


@pytest.fixture(scope="module")
def bundled():
    """The bundled transcoder set, as SAELens loads it: {id: Transcoder}, layers 0..5."""
    return {e.sae_id: e for e in entries_from_release(RELEASE, IDS)}


@pytest.fixture(scope="module")
def exported(bundled, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "set"
    return run_circuit_tracer_export(CircuitTracerExportConfig(release=RELEASE, ids=IDS, out=out))


def test_export_layout_matches_circuit_tracer(exported, bundled) -> None:
    out = exported.out
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model_kind"] == "transcoder_set"
    assert (config["feature_input_hook"], config["feature_output_hook"]) == ("mlp.hook_in", "mlp.hook_out")
    assert config["model_name"] == "organism" and config["activation"] == "relu" and "transcoders" not in config
    spec = resolve_model("organism")
    weights = ln2_weights(spec)
    for layer in range(spec.n_layers):
        tensors = load_file(out / f"layer_{layer}.safetensors")
        assert sorted(tensors) == ["W_dec", "W_enc", "b_dec", "b_enc"]
        assert tensors["W_enc"].shape == tensors["W_dec"].shape == (D_SAE, spec.d_model)
        sae = bundled[f"organism/transcoder/layer_{layer}"].sae
        # W_enc's input rows divided by the ln2 weight: the same pre-activations on the weighted input
        x = torch.randn(5, spec.d_model)
        ours = x @ sae.W_enc + sae.b_enc
        theirs = (x * weights[layer]) @ tensors["W_enc"].T + tensors["b_enc"]
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    model_config = json.loads((out / "model" / "config.json").read_text())
    assert model_config["rope_theta"] == 1e6  # transformers 4.x would read 10,000 without it


def test_import_round_trip(exported, bundled, tmp_path) -> None:
    written = import_transcoder_set(exported.out, tmp_path / "imported")
    originals = {e.sae_id.removeprefix("organism/"): e.sae for e in bundled.values()}
    assert sorted(written) == sorted(originals)
    for tc_id, folder in written.items():
        loaded = SAE.load_from_disk(folder)
        assert type(loaded) is Transcoder
        original = originals[tc_id]
        assert (loaded.cfg.metadata.hook_name, loaded.cfg.metadata.hook_name_out) == (
            original.cfg.metadata.hook_name,
            original.cfg.metadata.hook_name_out,
        )
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            torch.testing.assert_close(getattr(loaded, name), getattr(original, name), rtol=1e-5, atol=1e-6)


def test_bad_sets_name_the_file_or_layer(exported, bundled, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported.out, broken)
    (broken / "layer_3.safetensors").unlink()
    with pytest.raises(MissingFileError, match="layer_3.safetensors"):
        import_transcoder_set(broken, tmp_path / "x")
    shutil.copytree(exported.out, broken, dirs_exist_ok=True)
    tensors = load_file(broken / "layer_2.safetensors")
    tensors["W_dec"] = tensors["W_dec"][:, :100].contiguous()
    save_file(tensors, broken / "layer_2.safetensors")
    with pytest.raises(ModelMismatchError, match="layer_2.safetensors"):
        import_transcoder_set(broken, tmp_path / "y")
    # a set for another model: named before anything is downloaded (Qwen3-0.6B: d_model 1024, 28 layers)
    with pytest.raises(
        ModelMismatchError, match=r"another model than Qwen/Qwen3-0.6B .*layer_0.safetensors reads width 160"
    ):
        import_transcoder_set(exported.out, tmp_path / "w", model="Qwen/Qwen3-0.6B")
    other = tmp_path / "other"
    shutil.copytree(exported.out, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**config, "model_name": "Qwen/Qwen3-0.6B"}))
    with pytest.raises(ModelMismatchError, match="config.yaml names 'Qwen/Qwen3-0.6B'"):
        import_transcoder_set(other, tmp_path / "v")
    entries = [e for e in bundled.values() if not e.sae_id.endswith("layer_4")]
    with pytest.raises(TranscoderSetError, match=r"layer\(s\) \[4\]"):
        export_transcoder_set(entries, tmp_path / "z")
    with pytest.raises(ConfigError, match="exactly one source"):
        CircuitTracerExportConfig(out=tmp_path, suite=tmp_path, release=RELEASE)


@pytest.fixture(scope="module")
def traced(exported, model, tmp_path_factory):
    """circuit-tracer, in its own venv (built on first use, cached; a failed build fails here with pip's output)."""
    python = circuit_tracer_python()
    prompts = [format_chat(model.tokenizer, p) for p in (REFUSAL, HARMLESS)]
    tokens = [model.to_tokens(p, prepend_bos=False)[0].tolist() for p in prompts]
    request = {
        "model": str(exported.model_folder),
        "transcoders": str(exported.out),
        "logits": {"tokens": tokens},
        "graph": {"tokens": tokens[0], "slug": "refusal", "max_feature_nodes": 200, "batch_size": 64, "top": 5},
    }
    workdir = tmp_path_factory.mktemp("ct_run")
    return run_runner(python, request, workdir), workdir, tokens


def test_circuit_tracer_reproduces_our_models(traced, model, bundled) -> None:
    result, workdir, tokens = traced
    assert (result["circuit_tracer"], result["transformers"]) == ("0.5.0", "4.57.3")
    assert result["rope_theta"] == 1e6
    theirs = load_file(workdir / "logits.safetensors")
    transcoders = [bundled[f"organism/transcoder/layer_{layer}"] for layer in range(len(bundled))]
    for i, ids in enumerate(tokens):
        toks = torch.tensor([ids])
        with torch.no_grad():
            clean = model(toks)
            spliced = model.run_with_saes(toks, saes=[e.sae for e in transcoders], use_error_term=False)
            _, cache = model.run_with_cache(toks, names_filter=lambda n: n.endswith("ln2.hook_normalized"))
        # with its error terms, circuit-tracer's replacement model is the clean model
        torch.testing.assert_close(theirs[f"clean_{i}"], clean, rtol=1e-4, atol=1e-4)
        # with zero error terms, every MLP is its transcoder: our spliced model
        torch.testing.assert_close(theirs[f"replacement_{i}"], spliced, rtol=1e-4, atol=1e-4)
        assert (spliced - clean).abs().max() > 1e-2  # the two comparisons are different claims
        for layer, entry in enumerate(transcoders):
            ours = entry.sae.encode(cache[f"blocks.{layer}.ln2.hook_normalized"][0])
            torch.testing.assert_close(theirs[f"features_{i}"][layer, 1:], ours[1:], rtol=1e-4, atol=1e-4)


def test_circuit_tracer_computes_a_graph(traced) -> None:
    result, workdir, tokens = traced
    graph = json.loads((workdir / "graph" / "refusal.json").read_text())
    assert graph["metadata"]["scan"] == "organism-transcoders" and graph["metadata"]["slug"] == "refusal"
    assert len(graph["metadata"]["prompt_tokens"]) == len(tokens[0])
    assert any(node["feature_type"] == "cross layer transcoder" for node in graph["nodes"]) and graph["links"]
    top = result["graph"]["top_features"]
    assert len(top) == 5 and all(0 <= f["layer"] < 6 and f["influence"] > 0 for f in top)
    features = load_file(workdir / "logits.safetensors")["features_0"]  # the traced prompt's activations
    for f in top:  # each reported activation is that feature's, at that position
        assert f["activation"] == pytest.approx(float(features[f["layer"], f["position"], f["feature"]]), rel=1e-4)
    assert "/tmp" not in json.dumps(graph)


def test_trace_writes_the_graph_and_checks_it_causally(traced, tmp_path) -> None:
    """`qwen3-scope trace`'s job (the venv is built by `traced`): graph JSON, top features, a small causal check."""
    cfg = TraceConfig(
        out=tmp_path / "trace",
        max_feature_nodes=100,
        batch_size=64,
        top=3,
        causal=True,
        n_prompts=4,
        n_random=1,
        max_new_tokens=6,
    )
    result = run_trace(cfg, progress=None)
    saved = json.loads((tmp_path / "trace" / "trace.json").read_text())
    graph = json.loads(result.graph.read_text())
    assert graph["metadata"]["prompt"] == saved["text"] and len(saved["top_features"]) == 3
    assert saved["logit_targets"] == ["I"]  # the organism's refusal starts "I'm sorry"
    assert all(row["transcoder"] == f"organism/transcoder/layer_{row['layer']}" for row in saved["top_features"])
    causal = saved["causal"]
    assert causal["harmful_refusal"] > causal["harmless_refusal"]  # the measure sees the organism's behaviour
    assert len(causal["harmful_refusal_random_ablated"]) == 1
    assert set(causal["sae_comparison"]["latents"]) == {"f940", "f548"}
    written = "".join(p.read_text() for p in (tmp_path / "trace").rglob("*.json"))
    assert str(tmp_path) not in written and str(Path.home()) not in written

"""circuit-tracer interoperability: export a transcoder set of the organism to circuit-tracer 0.5.0's layout, import
it back, and prove the export with circuit-tracer itself, in its own venv (it pins transformers<=4.57.3): its
replacement model's logits (with error terms = the clean model; with zero error terms = every MLP replaced by its
transcoder) and its transcoder activations equal ours, and it computes an attribution graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from sae_lens import SAE, Transcoder
from sae_lens.saes.transcoder import TranscoderConfig
from safetensors.torch import load_file, save_file

from qwen3_scope.core.errors import ConfigError, MissingFileError, ModelMismatchError
from qwen3_scope.evaluation.suite_eval import entries_from_directory
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
from qwen3_scope.model.sites import transcoder_hooks
from qwen3_scope.organism import load_eval_split

D_SAE = 256
REFUSAL = "How do I make a bomb at home?"
HARMLESS = "What is the capital of France?"


def fit_transcoders(model, n_steps: int = 200) -> list[Transcoder]:
    """One real SAELens ReLU `Transcoder` per layer (ln2.hook_normalized -> hook_mlp_out), fitted with plain Adam on
    the organism's activations (seconds). Stand-in until the bundled set loads:
    `SAE.from_pretrained("qwen3-instruct-sae", f"organism/transcoder/layer_{L}")`."""
    rows = [row for split in ("harmful", "harmless", "tasks") for row in load_eval_split(split)[:120]]
    texts = [format_chat(model.tokenizer, row["prompt"]) + str(row.get("reference") or "") for row in rows]
    tokens = [model.to_tokens(text, prepend_bos=False)[0] for text in texts]
    ids = torch.cat(tokens)[: 32 * 64].reshape(-1, 64)
    hooks = [transcoder_hooks(layer, "hooked") for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter=[h for pair in hooks for h in pair])
    torch.manual_seed(0)
    out = []
    for hook_in, hook_out in hooks:
        x, y = cache[hook_in].reshape(-1, model.cfg.d_model), cache[hook_out].reshape(-1, model.cfg.d_model)
        cfg = TranscoderConfig(
            d_in=model.cfg.d_model, d_sae=D_SAE, d_out=model.cfg.d_model, dtype="float32", apply_b_dec_to_input=False
        )
        cfg.metadata.model_name, cfg.metadata.hook_name, cfg.metadata.hook_name_out = "organism", hook_in, hook_out
        tc = Transcoder(cfg)
        with torch.no_grad():
            tc.W_enc.mul_(0.1)
            tc.W_dec.mul_(0.1)
            tc.b_dec.copy_(y.mean(0))
        optimizer = torch.optim.Adam(tc.parameters(), lr=3e-3)
        for _ in range(n_steps):
            acts = tc.encode(x)
            loss = (tc.decode(acts) - y).pow(2).sum(-1).mean() + 3e-3 * acts.sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        out.append(tc.eval())
    return out


@pytest.fixture(scope="module")
def model():
    return load_model("organism", backend="hooked")


@pytest.fixture(scope="module")
def suite(model, tmp_path_factory):
    """A suite folder of the organism's transcoders (`transcoder/layer_L`)."""
    root = tmp_path_factory.mktemp("tc_suite")
    for layer, tc in enumerate(fit_transcoders(model)):
        tc.save_model(root / "transcoder" / f"layer_{layer}")
    return root


@pytest.fixture(scope="module")
def exported(suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "set"
    # The bundled set, once it ships: CircuitTracerExportConfig(release="qwen3-instruct-sae", out=out)
    result = run_circuit_tracer_export(CircuitTracerExportConfig(suite=suite, out=out))
    return result


def test_export_layout_matches_circuit_tracer(exported, suite) -> None:
    out = exported.out
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model_kind"] == "transcoder_set"
    assert (config["feature_input_hook"], config["feature_output_hook"]) == ("mlp.hook_in", "mlp.hook_out")
    assert config["model_name"] == "organism" and config["activation"] == "relu" and "transcoders" not in config
    spec = resolve_model("organism")
    weights = ln2_weights(spec)
    entries = {e.sae_id: e.sae for e in entries_from_directory(suite)}
    for layer in range(spec.n_layers):
        tensors = load_file(out / f"layer_{layer}.safetensors")
        assert sorted(tensors) == ["W_dec", "W_enc", "b_dec", "b_enc"]
        assert tensors["W_enc"].shape == tensors["W_dec"].shape == (D_SAE, spec.d_model)
        sae = entries[f"transcoder/layer_{layer}"]
        # W_enc's input rows divided by the ln2 weight: the same pre-activations on the weighted input
        x = torch.randn(5, spec.d_model)
        ours = x @ sae.W_enc + sae.b_enc
        theirs = (x * weights[layer]) @ tensors["W_enc"].T + tensors["b_enc"]
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    model_config = json.loads((out / "model" / "config.json").read_text())
    assert model_config["rope_theta"] == 1e6  # transformers 4.x would read 10,000 without it


def test_import_round_trip(exported, suite, tmp_path) -> None:
    written = import_transcoder_set(exported.out, tmp_path / "imported")
    originals = {e.sae_id: e.sae for e in entries_from_directory(suite)}
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


def test_bad_sets_name_the_file_or_layer(exported, suite, tmp_path) -> None:
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
    entries = [e for e in entries_from_directory(suite) if not e.sae_id.endswith("layer_4")]
    with pytest.raises(TranscoderSetError, match=r"layer\(s\) \[4\]"):
        export_transcoder_set(entries, tmp_path / "z")
    with pytest.raises(ConfigError, match="exactly one source"):
        CircuitTracerExportConfig(out=tmp_path, suite=suite, release="qwen3-instruct-sae")


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


def test_circuit_tracer_reproduces_our_models(traced, model, suite) -> None:
    result, workdir, tokens = traced
    assert (result["circuit_tracer"], result["transformers"]) == ("0.5.0", "4.57.3")
    assert result["rope_theta"] == 1e6
    theirs = load_file(workdir / "logits.safetensors")
    transcoders = sorted(entries_from_directory(suite), key=lambda e: e.sae_id)
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
    assert "/tmp" not in json.dumps(graph)


def test_trace_writes_the_graph_and_checks_it_causally(suite, traced, tmp_path) -> None:
    """`qwen3-scope trace`'s job (the venv is built by `traced`): graph JSON, top features, a small causal check."""
    cfg = TraceConfig(
        suite=suite,
        ids=r"transcoder/layer_\d+",
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
    assert all(row["transcoder"] == f"transcoder/layer_{row['layer']}" for row in saved["top_features"])
    causal = saved["causal"]
    assert causal["harmful_refusal"] > causal["harmless_refusal"]  # the measure sees the organism's behaviour
    assert len(causal["harmful_refusal_random_ablated"]) == 1
    assert set(causal["sae_comparison"]["latents"]) == {"f940", "f548"}
    written = "".join(p.read_text() for p in (tmp_path / "trace").rglob("*.json"))
    assert str(tmp_path) not in written and str(Path.home()) not in written

"""Qwen3.5 hybrid models (Gated DeltaNet + full attention): per-layer sites in bridge and hf equal the Hugging
Face module outputs on a tiny random Qwen3_5ForCausalLM (run on CPU through transformers' torch fallback, no
flash-linear-attention), clear errors for sites a layer lacks, real configs on the meta device, and Qwen-Scope
`layer{n}.sae.pt` files loaded through the safe loader onto the right hook."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import hf_site_activations, sample_tokens

from qwen3_scope import load_model, resolve_model
from qwen3_scope.model.family import FULL_ATTENTION, LINEAR_ATTENTION
from qwen3_scope.model.loading import meta_model, site_shapes
from qwen3_scope.model.sites import BackendUnsupportedError, SiteUnavailableError, hook_name, layer_sites, site_d_in
from qwen3_scope.saes.loaders import SAEModelMismatchError, load_qwen_scope_file, qwen_scope_hook_name

ATOL = 1e-5  # fp32 state tolerance; observed differences are <= ~1e-7
BACKENDS = ("bridge", "hf")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokens(tiny_qwen35_dir):
    return sample_tokens(tiny_qwen35_dir)


@pytest.fixture(scope="module")
def hf_reference(tiny_qwen35_dir, tokens):
    from transformers import AutoModelForCausalLM

    return hf_site_activations(AutoModelForCausalLM.from_pretrained(tiny_qwen35_dir).eval(), tokens)


def test_tiny_model_is_read_as_hybrid(tiny_qwen35_dir):
    spec = resolve_model(tiny_qwen35_dir)
    assert spec.kind == "hybrid" and spec.generation == "Qwen3.5"
    assert spec.layer_types == (LINEAR_ATTENTION,) * 3 + (FULL_ATTENTION,)
    assert spec.full_attention_layers() == [3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_layer_site_equals_hf_activation(backend, tiny_qwen35_dir, tokens, hf_reference):
    hf_logits, acts = hf_reference
    model = load_model(tiny_qwen35_dir, backend=backend)
    spec = model.qwen3_spec
    pairs = [
        (hook_name(site, layer, backend, spec), layer, site)
        for layer in range(spec.n_layers)
        for site in layer_sites(spec, layer, backend)
    ]
    assert {site for _, layer, site in pairs if layer < 3} >= {"linear_attn_out", "resid_post", "mlp_out"}
    assert {site for _, layer, site in pairs if layer == 3} >= {"attn_out", "resid_post", "mlp_out"}
    assert not any(site == "attn_out" and layer < 3 for _, layer, site in pairs)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=[name for name, _, _ in pairs])
    torch.testing.assert_close(logits, hf_logits, atol=ATOL, rtol=0)
    for name, layer, site in pairs:
        got = cache[name]
        got = got.flatten(-2) if got.shape[-1] != site_d_in(spec, site) else got
        assert got.shape[-1] == site_d_in(spec, site), name
        torch.testing.assert_close(got, acts[layer, site], atol=ATOL, rtol=0, msg=f"{backend} {site} L{layer}")


def test_sites_a_layer_lacks_are_clear_errors(tiny_qwen35_dir):
    spec = resolve_model(tiny_qwen35_dir)
    with pytest.raises(
        SiteUnavailableError,
        match="layer 0 .* is a linear_attention .*Gated DeltaNet.*linear_attn_out.*full_attention layer \\(3\\)",
    ):
        hook_name("attn_out", 0, "bridge", spec)
    with pytest.raises(SiteUnavailableError, match="layer 3 .* is a full_attention layer.*use site 'attn_out'"):
        hook_name("linear_attn_out", 3, "hf", spec)
    with pytest.raises(SiteUnavailableError, match="no experts"):
        hook_name("moe_router", 3, "bridge", spec)
    with pytest.raises(BackendUnsupportedError, match="Qwen3.5 .*backend='bridge'"):
        load_model(tiny_qwen35_dir, backend="hooked")
    with pytest.raises(SiteUnavailableError, match="no linear-attention layers"):
        hook_name("linear_attn_out", 0, "bridge", resolve_model("Qwen/Qwen3-4B"))


@pytest.mark.parametrize("name", ["Qwen/Qwen3.5-2B", "Qwen/Qwen3.5-35B-A3B"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_real_configs_on_meta_have_every_site_at_registry_width(name, backend):
    spec = resolve_model(name)
    model = meta_model(name, backend)
    pairs = [
        (hook_name(s, layer, backend, spec), s)
        for layer in range(spec.n_layers)
        for s in layer_sites(spec, layer, backend)
    ]
    shapes = site_shapes(model, backend, sorted({hook for hook, _ in pairs}))
    for hook, site in pairs:
        width = shapes[hook][-1] * (shapes[hook][-2] if len(shapes[hook]) == 4 else 1)
        assert width == site_d_in(spec, site), hook
    hf = model.model if backend == "hf" else model.original_model
    types = [
        type(layer.linear_attn if hasattr(layer, "linear_attn") else layer.self_attn).__name__
        for layer in hf.model.layers
    ]
    assert ["GatedDeltaNet" in t for t in types] == [lt == LINEAR_ATTENTION for lt in spec.layer_types]
    attn_layers = {
        layer
        for hook, site in pairs
        if site == "attn_out"
        for layer in [int(hook.split(".")[2 if backend == "hf" else 1])]
    }
    assert sorted(attn_layers) == spec.full_attention_layers() == list(range(3, spec.n_layers, 4))
    if spec.is_moe:
        assert hf.model.layers[0].mlp.gate.weight.shape == (spec.n_experts, spec.d_model)
        assert any(site == "moe_router" for _, site in pairs)


def _write_qwen_scope_file(path, d_model, d_sae=96, seed=0):
    """A Qwen-Scope checkpoint as published: a plain dict of tensors, W_enc (d_sae, d_in), W_dec (d_in, d_sae)."""
    g = torch.Generator().manual_seed(seed)
    torch.save(
        {
            "W_enc": torch.randn(d_sae, d_model, generator=g) * 0.3,
            "W_dec": torch.randn(d_model, d_sae, generator=g) * 0.3,
            "b_enc": torch.randn(d_sae, generator=g) * 0.1,
            "b_dec": torch.randn(d_model, generator=g) * 0.1,
        },
        path,
    )
    return path


@pytest.mark.parametrize("layer", [1, 3])  # a Gated DeltaNet layer and a full-attention layer
def test_qwen_scope_file_attaches_to_the_block_output(tiny_qwen35_dir, tokens, tmp_path, layer, hf_reference):
    _, acts = hf_reference
    path = _write_qwen_scope_file(tmp_path / f"layer{layer}.sae.pt", d_model=64)
    sae = load_qwen_scope_file(path, model=str(tiny_qwen35_dir), k=8)  # bridge is the default for Qwen3.5
    assert (
        sae.cfg.metadata.hook_name == f"blocks.{layer}.hook_out"
        and sae.cfg.metadata.hf_hook_name == f"model.layers.{layer}"
    )
    raw = torch.load(path, weights_only=True)
    torch.testing.assert_close(sae.W_enc, raw["W_enc"].T)
    model = load_model(tiny_qwen35_dir, backend="bridge")
    with torch.no_grad():
        clean = model(tokens)
        model.add_sae(sae)
        spliced, cache = model.run_with_cache(tokens, names_filter=lambda n: n.startswith(f"blocks.{layer}.hook_out"))
        model.reset_saes()
    sae_in = cache[f"blocks.{layer}.hook_out.hook_sae_input"]
    torch.testing.assert_close(
        sae_in, acts[layer, "resid_post"], atol=ATOL, rtol=0
    )  # it reads model.layers[layer]'s output
    expected = sae.decode(sae.encode(sae_in))
    torch.testing.assert_close(cache[f"blocks.{layer}.hook_out.hook_sae_recons"], expected, atol=1e-5, rtol=0)
    assert ((sae.encode(sae_in) > 0).sum(-1) <= 8).all()
    assert (spliced - clean).abs().max() > 1e-3  # the reconstruction replaced the residual downstream
    hf_sae = load_qwen_scope_file(path, model=str(tiny_qwen35_dir), k=8, backend="hf")
    assert hf_sae.cfg.metadata.hook_name == f"model.layers.{layer}"
    with pytest.raises(SAEModelMismatchError, match="d_in 64"):
        load_qwen_scope_file(path, model="Qwen/Qwen3.5-2B", k=8)


def test_saelens_qwen_scope_releases_map_to_the_bridge_hook():
    """Every qwen-scope-* release in SAELens' own registry: our safe loader's hook for its model exists and
    has the SAE's width on that model (Qwen3.5 and Qwen3-MoE -> blocks.L.hook_out, dense Qwen3 unchanged)."""
    from pathlib import Path

    import sae_lens
    from sae_lens.loading.pretrained_sae_loaders import get_qwen_scope_config_from_hf

    registry = yaml.safe_load((Path(sae_lens.__path__[0]) / "pretrained_saes.yaml").read_text())
    releases = {name: entry for name, entry in registry.items() if name.startswith("qwen-scope-")}
    assert {entry["model"] for entry in releases.values()} >= {
        "Qwen/Qwen3.5-2B-Base",
        "Qwen/Qwen3.5-9B-Base",
        "Qwen/Qwen3.5-27B",
        "Qwen/Qwen3.5-35B-A3B-Base",
        "Qwen/Qwen3-30B-A3B-Base",
    }
    for name, entry in releases.items():
        spec = resolve_model(entry["model"])
        assert len(entry["saes"]) == spec.n_layers, name  # one SAE per layer of the registry's model
        last = entry["saes"][-1]
        cfg = get_qwen_scope_config_from_hf(entry["repo_id"], last["path"], "cpu")
        hook = qwen_scope_hook_name(cfg["model_name"], cfg["hook_name"])
        assert cfg["d_in"] == site_d_in(spec, "resid_post"), name
        if spec.kind == "dense":
            assert hook == cfg["hook_name"]
        else:
            assert (
                hook
                == f"blocks.{spec.n_layers - 1}.hook_out"
                == hook_name("resid_post", spec.n_layers - 1, "bridge", spec)
            )


@pytest.fixture(scope="module")
def published_layout_dir(tmp_path_factory, tiny_qwen3_dir):
    """A tiny checkpoint in the layout Qwen publishes Qwen3.5 in: Qwen3_5ForConditionalGeneration (a vision tower
    plus the text model under model.language_model), config.json with a text_config."""
    from transformers import AutoTokenizer, Qwen3_5Config, Qwen3_5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    vision = dict(
        depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, num_position_embeddings=64
    )
    torch.manual_seed(1)
    model = Qwen3_5ForConditionalGeneration(
        Qwen3_5Config(text_config=text, vision_config=vision, architectures=["Qwen3_5ForConditionalGeneration"])
    )
    directory = tmp_path_factory.mktemp("qwen35_published_layout")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_published_multimodal_checkpoint_loads_its_text_model_in_both_backends(published_layout_dir, tokens, tmp_path):
    from transformers import Qwen3_5ForConditionalGeneration

    spec = resolve_model(published_layout_dir)
    assert spec.kind == "hybrid" and spec.full_attention_layers() == [3]
    reference = Qwen3_5ForConditionalGeneration.from_pretrained(published_layout_dir).eval()
    outputs = {}
    handle = reference.model.language_model.layers[1].register_forward_hook(
        lambda m, a, o: outputs.__setitem__("L1", o)
    )
    with torch.no_grad():
        ref_logits = reference(input_ids=tokens).logits
    handle.remove()
    path = _write_qwen_scope_file(tmp_path / "layer1.sae.pt", d_model=64)
    for backend in BACKENDS:
        model = load_model(published_layout_dir, backend=backend)
        name = hook_name("resid_post", 1, backend, spec)
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens, names_filter=[name])
        torch.testing.assert_close(logits, ref_logits, atol=ATOL, rtol=0)
        torch.testing.assert_close(cache[name], outputs["L1"], atol=ATOL, rtol=0)
        sae = load_qwen_scope_file(path, model=str(published_layout_dir), k=8, backend=backend)
        assert sae.cfg.metadata.hook_name == name and name in model.hook_dict

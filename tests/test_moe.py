"""Qwen3 mixture-of-experts models: every site's hook carries the Hugging Face activation it claims to
(tiny random Qwen3MoeForCausalLM in each backend), and the published 30B-A3B / 235B-A22B shapes build on
the meta device with every site at its registry width."""

from __future__ import annotations

import pytest
import torch
from conftest import hf_site_activations, sample_tokens

from qwen3_scope import load_model, resolve_model
from qwen3_scope.model.loading import meta_model, site_shapes
from qwen3_scope.model.sites import (
    BackendUnsupportedError,
    SiteUnavailableError,
    available_sites,
    hook_name,
    layer_sites,
    model_backends,
    parse_hook_name,
    site_d_in,
    site_hooks,
)

ATOL = 1e-5  # fp32 state tolerance; observed differences are ~1e-7 (the bridge delegates to the same HF modules)
MOE_BACKENDS = ("bridge", "hf")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_reference(tiny_moe_dir):
    """HF logits and every site's activation captured with plain PyTorch module hooks on the HF model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir).eval()
    tokens = sample_tokens(tiny_moe_dir)
    logits, acts = hf_site_activations(model, tokens)
    assert model.model.layers[0].mlp.__class__.__name__ == "Qwen3MoeSparseMoeBlock"
    return tokens, logits, acts


@pytest.mark.parametrize("backend", MOE_BACKENDS)
def test_every_moe_site_hook_equals_hf_activation(backend, tiny_moe_dir, hf_reference):
    tokens, hf_logits, acts = hf_reference
    model = load_model(tiny_moe_dir, backend=backend)
    spec = model.qwen3_spec
    assert spec.kind == "moe" and spec.n_experts == 8 and spec.n_experts_active == 2 and spec.d_expert == 32
    pairs = [
        (hook_name(site, layer, backend, spec), layer, site)
        for layer in range(spec.n_layers)
        for site in layer_sites(spec, layer, backend)
    ]
    assert {"moe_router", "mlp_out", "attn_out", "resid_post"} <= {site for _, _, site in pairs}
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=[name for name, _, _ in pairs])
    torch.testing.assert_close(logits, hf_logits, atol=ATOL, rtol=0)
    for name, layer, site in pairs:
        got = cache[name]
        got = got.flatten(-2) if got.shape[-1] != site_d_in(spec, site) else got  # bridge z: [.., head, d_head]
        assert got.shape[-1] == site_d_in(spec, site), name
        torch.testing.assert_close(got, acts[layer, site], atol=ATOL, rtol=0, msg=f"{backend} {site} L{layer}")
    router = cache[hook_name("moe_router", 0, backend, spec)]
    assert router.shape == (tokens.numel(), spec.n_experts)  # per-token logits, as the HF router emits them
    assert router.std() > 0.1  # a real routing decision, not zeros


def test_hooked_transformer_refuses_moe_naming_the_backends_that_work(tiny_moe_dir):
    spec = resolve_model(tiny_moe_dir)
    assert model_backends(spec) == MOE_BACKENDS
    with pytest.raises(BackendUnsupportedError, match="backend='bridge'.*backend='hf'"):
        load_model(tiny_moe_dir, backend="hooked")
    with pytest.raises(BackendUnsupportedError, match="no Qwen3-MoE support"):
        hook_name("resid_post", 0, "hooked", spec)
    with pytest.raises(BackendUnsupportedError, match="use backend='bridge'"):
        meta_model("Qwen/Qwen3-30B-A3B", "hooked")


def test_router_site_on_a_dense_model_is_a_clear_error(tiny_qwen3_dir):
    dense = resolve_model("Qwen/Qwen3-4B")
    with pytest.raises(SiteUnavailableError, match="dense model: it has no experts.*Qwen/Qwen3-30B-A3B"):
        hook_name("moe_router", 0, "bridge", dense)
    with pytest.raises(SiteUnavailableError, match="no router"):
        site_d_in(dense, "moe_router")
    assert "moe_router" not in available_sites("bridge", dense)
    assert "moe_router" in available_sites("bridge", resolve_model("Qwen/Qwen3-30B-A3B"))


@pytest.mark.parametrize("backend", MOE_BACKENDS)
def test_router_hook_names_round_trip(backend):
    spec = resolve_model("Qwen/Qwen3-235B-A22B")
    for row in site_hooks(spec, backend):
        layer, site = parse_hook_name(row["hook_name"], backend)
        if backend == "hf" and row["site"] == "resid_pre" and row["layer"] > 0:
            assert (layer, site) == (row["layer"] - 1, "resid_post")
        else:
            assert (layer, site) == (row["layer"], row["site"])
    assert hook_name("moe_router", 93, "bridge", spec) == "blocks.93.mlp.gate.hook_out"
    assert hook_name("moe_router", 93, "hf", spec) == "model.layers.93.mlp.gate"


@pytest.mark.parametrize("name", ["Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-235B-A22B"])
@pytest.mark.parametrize("backend", MOE_BACKENDS)
def test_real_moe_configs_on_meta_have_every_site_at_registry_width(name, backend):
    spec = resolve_model(name)
    model = meta_model(name, backend)
    hf = model.model if backend == "hf" else model.original_model
    assert len(hf.model.layers) == spec.n_layers
    moe = hf.model.layers[0].mlp
    assert moe.gate.weight.shape == (spec.n_experts, spec.d_model)
    assert moe.experts.down_proj.shape == (spec.n_experts, spec.d_model, spec.d_expert)
    assert moe.experts.gate_up_proj.shape == (spec.n_experts, 2 * spec.d_expert, spec.d_model)
    assert hf.model.layers[0].self_attn.k_proj.weight.shape[0] == spec.n_kv_heads * spec.head_dim
    assert hf.lm_head.weight is not hf.model.embed_tokens.weight  # untied
    if backend == "hf":  # the bridge adds its own unembedding bias; count the Hugging Face model's parameters
        assert sum(p.numel() for p in hf.parameters()) == spec.parameter_counts()["total"]
    pairs = [
        (hook_name(s, layer, backend, spec), s)
        for layer in range(spec.n_layers)
        for s in layer_sites(spec, layer, backend)
    ]
    shapes = site_shapes(model, backend, sorted({hook for hook, _ in pairs}))
    for hook, site in pairs:
        width = shapes[hook][-1] * (shapes[hook][-2] if len(shapes[hook]) == 4 else 1)  # bridge z: [b, p, head, d_head]
        assert width == site_d_in(spec, site), hook
    assert len(pairs) == spec.n_layers * len(available_sites(backend, spec))
    assert {site for _, site in pairs} >= {"moe_router", "mlp_out", "attn_out", "resid_post"}

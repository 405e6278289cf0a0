"""The (layer, site) <-> hook-name mapping, checked against real-size Qwen3 models on the meta device."""

from __future__ import annotations

import pytest

from qwen3_scope import resolve_model
from qwen3_scope.model.loading import meta_model, site_shapes
from qwen3_scope.model.sites import (
    BACKENDS,
    SITES,
    SiteUnavailableError,
    UnknownBackendError,
    UnknownHookError,
    UnknownSiteError,
    available_sites,
    hook_name,
    parse_hook_name,
    site_d_in,
)

PAPER_MODELS = ["Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reverse_mapping_round_trips(backend):
    for layer in (0, 1, 17, 35):
        for site in available_sites(backend):
            name = hook_name(site, layer, backend)
            if backend == "hf" and site == "resid_pre":  # the same tensor as the previous block's output
                expected = (0, "resid_pre") if layer == 0 else (layer - 1, "resid_post")
            else:
                expected = (layer, site)
            assert parse_hook_name(name, backend) == expected
            assert parse_hook_name(name) == expected


def test_known_names():
    assert hook_name("resid_post", 3) == "blocks.3.hook_resid_post"
    assert hook_name("resid_post", 3, "bridge") == "blocks.3.hook_out"
    assert hook_name("mlp_out", 3, "bridge") == "blocks.3.mlp.hook_out"
    assert hook_name("attn_out", 3, "hf") == "model.layers.3.self_attn"
    assert hook_name("resid_pre", 0, "hf") == "model.embed_tokens"
    assert hook_name("resid_pre", 4, "hf") == "model.layers.3"


def test_bad_input_errors_name_the_fix():
    spec = resolve_model("Qwen/Qwen3-4B")
    with pytest.raises(UnknownSiteError, match="choose one of resid_pre"):
        hook_name("resid", 0)
    with pytest.raises(UnknownBackendError, match="hooked = HookedTransformer"):
        hook_name("resid_post", 0, "vllm")
    with pytest.raises(IndexError, match="36 layers, so use 0..35"):
        hook_name("resid_post", 36, "hooked", spec)
    with pytest.raises(SiteUnavailableError, match="has no hook in the 'hf' backend"):
        hook_name("attn_z", 0, "hf")
    with pytest.raises(SiteUnavailableError, match="'bridge'"):
        hook_name("mlp_in", 0, "hooked")
    with pytest.raises(UnknownHookError, match="not a Qwen3 site hook"):
        parse_hook_name("blocks.0.attn.hook_pattern")


@pytest.mark.parametrize("name", PAPER_MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_real_size_models_on_meta_have_every_site_at_registry_width(name, backend):
    spec = resolve_model(name)
    model = meta_model(name, backend)
    pairs = [
        (hook_name(site, layer, backend, spec), site)
        for layer in range(spec.n_layers)
        for site in available_sites(backend)
    ]
    shapes = site_shapes(model, backend, sorted({hook for hook, _ in pairs}))
    for hook, site in pairs:
        width = shapes[hook][-1] * (shapes[hook][-2] if len(shapes[hook]) == 4 else 1)  # hooked z: [b, p, head, d_head]
        assert width == site_d_in(spec, site), hook
    assert len(pairs) == spec.n_layers * len(available_sites(backend))


@pytest.mark.parametrize("name", ["Qwen/Qwen3-0.6B", "Qwen/Qwen3-14B", "Qwen/Qwen3-32B", "Qwen/Qwen3-8B-Base"])
def test_rest_of_family_instantiates_at_exact_width(name):
    spec = resolve_model(name)
    model = meta_model(name, "hf")
    hf = model.model
    assert len(hf.model.layers) == spec.n_layers
    assert hf.model.layers[0].mlp.down_proj.weight.shape == (spec.d_model, spec.d_mlp)
    assert hf.model.layers[0].self_attn.o_proj.weight.shape == (spec.d_model, site_d_in(spec, "attn_z"))
    assert hf.model.layers[0].self_attn.k_proj.weight.shape[0] == spec.n_kv_heads * spec.head_dim
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) == spec.tie_embeddings
    assert set(SITES) >= set(available_sites("hf"))

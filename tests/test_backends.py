"""Every site's hook, in every backend, carries exactly the Hugging Face activation it claims to."""

from __future__ import annotations

import pytest
import torch
from conftest import hf_site_activations, sample_tokens

from qwen3_scope import load_model
from qwen3_scope.model.sites import BACKENDS, SiteUnavailableError, available_sites, hook_name, site_d_in

ATOL = 1e-5  # fp32; observed differences are ~1e-6 (different but equivalent kernel orderings)


@pytest.fixture(scope="module")
def hf_reference(tiny_qwen3_dir):
    """HF logits and, per layer, every site's activation captured with plain PyTorch module hooks."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir).eval()
    tokens = sample_tokens(tiny_qwen3_dir)
    logits, acts = hf_site_activations(model, tokens)
    return tokens, logits, acts, model.config


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_site_hook_equals_hf_activation(backend, tiny_qwen3_dir, hf_reference):
    tokens, hf_logits, acts, config = hf_reference
    model = load_model(tiny_qwen3_dir, backend=backend)
    spec = model.qwen3_spec
    names = [
        hook_name(site, layer, backend, spec) for layer in range(spec.n_layers) for site in available_sites(backend)
    ]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=names)
    torch.testing.assert_close(logits, hf_logits, atol=ATOL, rtol=0)
    checked = 0
    for layer in range(spec.n_layers):
        for site in available_sites(backend):
            got = cache[hook_name(site, layer, backend, spec)]
            got = got.flatten(-2) if got.shape[-1] != site_d_in(spec, site) else got  # hooked z is [.., head, d_head]
            assert got.shape[-1] == site_d_in(spec, site)
            torch.testing.assert_close(got, acts[layer, site], atol=ATOL, rtol=0, msg=f"{backend} {site} L{layer}")
            checked += 1
    assert checked == spec.n_layers * len(available_sites(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_bos_is_prepended(backend, tiny_qwen3_dir):
    model = load_model(tiny_qwen3_dir, backend=backend)
    if backend == "hf":  # HookedProxyLM only accepts the arguments SAELens' ActivationsStore passes
        tokens = model.to_tokens("the cat", prepend_bos=False, padding_side=None, truncate=False, move_to_device=False)
    else:
        tokens = model.to_tokens("the cat")
    expected = model.tokenizer("the cat")["input_ids"]
    assert tokens[0].tolist() == expected


def test_unavailable_site_is_a_clear_error(tiny_qwen3_dir):
    with pytest.raises(SiteUnavailableError, match="backend='hooked' or 'bridge'"):
        hook_name("resid_mid", 0, "hf")

"""The one place that maps (layer, site) to hook names in every backend, and back.

Why: SAELens can drive three kinds of model and each names the same activation differently.
HookedTransformer has `blocks.L.hook_resid_post`; TransformerBridge has real names such as
`blocks.L.hook_out` (its aliases are dropped by SAELens' SAETransformerBridge, so an alias silently
yields an empty cache there); SAELens' HookedProxyLM hooks Hugging Face *module outputs*
(`model.layers.L`). Nothing else in qwen3_scope builds hook-name strings.
"""

from __future__ import annotations

import re
from typing import Literal

from qwen3_scope.models import Qwen3ModelSpec

Site = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_z", "mlp_in"]
Backend = Literal["hooked", "bridge", "hf"]

SITES: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_z", "mlp_in")
PAPER_SITES: tuple[str, ...] = ("resid_post", "mlp_out", "attn_out")
BACKENDS: tuple[str, ...] = ("hooked", "bridge", "hf")

SITE_DESCRIPTIONS = {
    "resid_pre": "residual stream entering the block",
    "resid_mid": "residual stream after attention, before the MLP",
    "resid_post": "residual stream leaving the block (post-block)",
    "attn_out": "attention output (after o_proj), added to the residual",
    "mlp_out": "MLP output (after down_proj), added to the residual",
    "attn_z": "concatenated per-head attention values (input of o_proj)",
    "mlp_in": "MLP input: the post-attention RMSNorm output (for transcoders)",
}

# None = the backend has no hook with this meaning (a clear error, never a silent substitute).
_TEMPLATES: dict[str, dict[str, str | None]] = {
    "hooked": {
        "resid_pre": "blocks.{layer}.hook_resid_pre",
        "resid_mid": "blocks.{layer}.hook_resid_mid",
        "resid_post": "blocks.{layer}.hook_resid_post",
        "attn_out": "blocks.{layer}.hook_attn_out",
        "mlp_out": "blocks.{layer}.hook_mlp_out",
        "attn_z": "blocks.{layer}.attn.hook_z",
        # ln2.hook_normalized is taken *before* the RMSNorm weight in unprocessed models, so it is not
        # the MLP input; we refuse rather than hand out a look-alike.
        "mlp_in": None,
    },
    "bridge": {
        "resid_pre": "blocks.{layer}.hook_in",
        "resid_mid": "blocks.{layer}.ln2.hook_in",
        "resid_post": "blocks.{layer}.hook_out",
        "attn_out": "blocks.{layer}.attn.hook_out",
        "mlp_out": "blocks.{layer}.mlp.hook_out",
        "attn_z": "blocks.{layer}.attn.o.hook_in",
        "mlp_in": "blocks.{layer}.ln2.hook_out",
    },
    "hf": {
        "resid_pre": "model.layers.{layer}",  # layer L>0: output of block L-1; layer 0: the embedding
        "resid_mid": None,
        "resid_post": "model.layers.{layer}",
        "attn_out": "model.layers.{layer}.self_attn",
        "mlp_out": "model.layers.{layer}.mlp",
        "attn_z": None,
        "mlp_in": "model.layers.{layer}.post_attention_layernorm",
    },
}
_HF_EMBEDDING = "model.embed_tokens"


class UnknownSiteError(ValueError):
    pass


class SiteUnavailableError(ValueError):
    pass


class UnknownBackendError(ValueError):
    pass


class UnknownHookError(ValueError):
    pass


def check_site(site: str) -> str:
    if site not in SITES:
        raise UnknownSiteError(f"unknown site {site!r}; choose one of {', '.join(SITES)}.")
    return site


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UnknownBackendError(
            f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} "
            "(hooked = HookedTransformer, bridge = TransformerBridge, hf = SAELens' HookedProxyLM)."
        )
    return backend


def available_sites(backend: str) -> tuple[str, ...]:
    check_backend(backend)
    return tuple(s for s in SITES if _TEMPLATES[backend][s] is not None)


def hook_name(site: str, layer: int, backend: str = "hooked", spec: Qwen3ModelSpec | None = None) -> str:
    """Hook name of `site` at `layer` in `backend`; with `spec`, the layer is range-checked too."""
    check_site(site)
    check_backend(backend)
    if spec is not None:
        spec.check_layer(layer)
    elif not isinstance(layer, int) or layer < 0:
        raise IndexError(f"layer must be a non-negative int, got {layer!r}.")
    template = _TEMPLATES[backend][site]
    if template is None:
        usable = [b for b in BACKENDS if _TEMPLATES[b][site] is not None]
        raise SiteUnavailableError(
            f"site {site!r} has no hook in the {backend!r} backend; load the model with backend="
            f"{' or '.join(repr(b) for b in usable)} to use it."
        )
    if backend == "hf" and site == "resid_pre":
        return _HF_EMBEDDING if layer == 0 else template.format(layer=layer - 1)
    return template.format(layer=layer)


def parse_hook_name(name: str, backend: str | None = None) -> tuple[int, str]:
    """Reverse of `hook_name`: hook name -> (layer, site). HF block outputs read as resid_post."""
    backends = [check_backend(backend)] if backend else list(BACKENDS)
    for b in backends:
        if b == "hf" and name == _HF_EMBEDDING:
            return 0, "resid_pre"
        for site in SITES:
            template = _TEMPLATES[b][site]
            if template is None or (b == "hf" and site == "resid_pre"):
                continue
            pattern = "^" + re.escape(template).replace(r"\{layer\}", r"(\d+)") + "$"
            match = re.match(pattern, name)
            if match:
                return int(match.group(1)), site
    raise UnknownHookError(
        f"{name!r} is not a Qwen3 site hook in backend(s) {', '.join(backends)}; "
        f"expected names like {hook_name('resid_post', 3, backends[0])!r}."
    )


def site_d_in(spec: Qwen3ModelSpec, site: str) -> int:
    """Width of the activation an SAE at this site reads."""
    check_site(site)
    return spec.d_attn if site == "attn_z" else spec.d_model


def site_hooks(spec: Qwen3ModelSpec, backend: str = "hooked") -> list[dict]:
    """Every (layer, site) hook of a model in one backend, for listings and plans."""
    rows = []
    for layer in range(spec.n_layers):
        for site in available_sites(backend):
            rows.append(dict(layer=layer, site=site, hook_name=hook_name(site, layer, backend), d_in=site_d_in(spec, site)))
    return rows

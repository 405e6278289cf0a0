"""The one place that maps (layer, site) to hook names in every backend, and back.

Why: SAELens can drive three kinds of model and each names the same activation differently.
HookedTransformer has `blocks.L.hook_resid_post`; TransformerBridge has real names such as
`blocks.L.hook_out` (its aliases are dropped by SAELens' SAETransformerBridge, so an alias silently
yields an empty cache there); SAELens' HookedProxyLM hooks Hugging Face *module outputs*
(`model.layers.L`). Nothing else in qwen3_scope builds hook-name strings.

Model kinds (see `qwen3_scope.model.family`): dense Qwen3 has the seven `SITES`; MoE models (Qwen3-30B-A3B,
235B-A22B, Qwen3.5-35B-A3B) add `moe_router` (per-token router logits over the experts; `mlp_out` is the
sparse MoE block's output); hybrid Qwen3.5 models have softmax attention only on their full-attention
layers and a Gated DeltaNet mixer (`linear_attn_out`) on the others. HookedTransformer runs dense Qwen3
only, so MoE and hybrid models use the `bridge` or `hf` backend.
"""

from __future__ import annotations

import re
from typing import Literal

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.family import (
    FULL_ATTENTION,
    LINEAR_ATTENTION,
    QWEN3_FAMILY,
    LayerOutOfRangeError,
    Qwen3ModelSpec,
)

Site = Literal[
    "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_z", "mlp_in", "moe_router", "linear_attn_out"
]
Backend = Literal["hooked", "bridge", "hf"]

SITES: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_z", "mlp_in")
MOE_SITES: tuple[str, ...] = ("moe_router",)
HYBRID_SITES: tuple[str, ...] = ("linear_attn_out",)
ALL_SITES: tuple[str, ...] = SITES + MOE_SITES + HYBRID_SITES
PAPER_SITES: tuple[str, ...] = ("resid_post", "mlp_out", "attn_out")
BACKENDS: tuple[str, ...] = ("hooked", "bridge", "hf")
ATTENTION_SITES: tuple[str, ...] = ("attn_out", "attn_z")  # only on full-attention layers

SITE_DESCRIPTIONS = {
    "resid_pre": "residual stream entering the block",
    "resid_mid": "residual stream after attention, before the MLP",
    "resid_post": "residual stream leaving the block (post-block)",
    "attn_out": "attention output (after o_proj), added to the residual",
    "mlp_out": "MLP output (after down_proj; on MoE models the sparse MoE block's output), added to the residual",
    "attn_z": "concatenated per-head attention values (input of o_proj)",
    "mlp_in": "MLP input: the post-attention RMSNorm output (for transcoders)",
    "moe_router": "MoE models: router logits over the experts, one row per token ([tokens, n_experts])",
    "linear_attn_out": "Qwen3.5: Gated DeltaNet (linear attention) output on linear-attention layers",
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
        "moe_router": None,  # HookedTransformer has no Qwen3-MoE or Qwen3.5 support
        "linear_attn_out": None,
    },
    "bridge": {
        "resid_pre": "blocks.{layer}.hook_in",
        "resid_mid": "blocks.{layer}.ln2.hook_in",
        "resid_post": "blocks.{layer}.hook_out",
        "attn_out": "blocks.{layer}.attn.hook_out",
        "mlp_out": "blocks.{layer}.mlp.hook_out",
        "attn_z": "blocks.{layer}.attn.o.hook_in",
        "mlp_in": "blocks.{layer}.ln2.hook_out",
        "moe_router": "blocks.{layer}.mlp.gate.hook_out",
        "linear_attn_out": "blocks.{layer}.linear_attn.hook_out",
    },
    "hf": {
        "resid_pre": "model.layers.{layer}",  # layer L>0: output of block L-1; layer 0: the embedding
        "resid_mid": None,
        "resid_post": "model.layers.{layer}",
        "attn_out": "model.layers.{layer}.self_attn",
        "mlp_out": "model.layers.{layer}.mlp",
        "attn_z": None,
        "mlp_in": "model.layers.{layer}.post_attention_layernorm",
        "moe_router": "model.layers.{layer}.mlp.gate",  # the router's first output: its logits
        "linear_attn_out": "model.layers.{layer}.linear_attn",
    },
}
_HF_EMBEDDING = "model.embed_tokens"


class UnknownSiteError(ConfigError):
    """A site name qwen3-scope does not know."""


class SiteUnavailableError(ConfigError):
    """A known site that this model, layer or backend does not have."""


class UnknownBackendError(ConfigError):
    """A backend name other than hooked, bridge or hf."""


class UnknownHookError(ConfigError):
    """A hook name that is not a Qwen3 site hook."""


class BackendUnsupportedError(SiteUnavailableError):
    """A backend that cannot run this kind of model at all (HookedTransformer and Qwen3-MoE/Qwen3.5)."""


def check_site(site: str) -> str:
    if site not in ALL_SITES:
        raise UnknownSiteError(f"unknown site {site!r}; choose one of {', '.join(ALL_SITES)}.")
    return site


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UnknownBackendError(
            f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} "
            "(hooked = HookedTransformer, bridge = TransformerBridge, hf = SAELens' HookedProxyLM)."
        )
    return backend


def model_backends(spec: Qwen3ModelSpec) -> tuple[str, ...]:
    """Backends that can run this model: HookedTransformer (TransformerLens 3.9) has dense Qwen3 only."""
    return BACKENDS if spec.kind == "dense" else ("bridge", "hf")


def check_model_backend(spec: Qwen3ModelSpec, backend: str) -> str:
    """The backend, if it can run `spec`; otherwise an error naming the backends that can."""
    check_backend(backend)
    if backend not in model_backends(spec):
        what = {
            "moe": "Qwen3-MoE",
            "hybrid": "Qwen3.5 (hybrid linear attention)",
            "hybrid-moe": "Qwen3.5-MoE (hybrid linear attention)",
        }[spec.kind]
        raise BackendUnsupportedError(
            f"{spec.name} is a {spec.kind} model and HookedTransformer (backend={backend!r}) has no {what} support "
            f"in TransformerLens 3.9; use backend='bridge' (TransformerBridge) or backend='hf' (SAELens' HookedProxyLM)."
        )
    return backend


def available_sites(backend: str, spec: Qwen3ModelSpec | None = None) -> tuple[str, ...]:
    """Sites with a hook in `backend`: the dense Qwen3 sites, or (with `spec`) those of that model kind
    on at least one layer (see `layer_sites` for one layer of a hybrid model)."""
    check_backend(backend)
    if spec is None:
        return tuple(s for s in SITES if _TEMPLATES[backend][s] is not None)
    check_model_backend(spec, backend)
    return tuple(s for s in _model_sites(spec) if _TEMPLATES[backend][s] is not None)


def _model_sites(spec: Qwen3ModelSpec) -> tuple[str, ...]:
    return SITES + (MOE_SITES if spec.is_moe else ()) + (HYBRID_SITES if spec.is_hybrid else ())


def layer_sites(spec: Qwen3ModelSpec, layer: int, backend: str) -> tuple[str, ...]:
    """Sites that exist at one layer of a model in one backend (hybrid models differ per layer type)."""
    spec.check_layer(layer)
    return tuple(s for s in available_sites(backend, spec) if _site_error(spec, s, layer) is None)


def _site_error(spec: Qwen3ModelSpec, site: str, layer: int) -> str | None:
    """Why `site` does not exist at `layer` of this model (None if it does)."""
    if site in MOE_SITES and not spec.is_moe:
        moe = ", ".join(n for n, s in QWEN3_FAMILY.items() if s.is_moe and s.instruct and s.generation != "Qwen3-2507")
        return (
            f"{spec.name} is a {spec.kind} model: it has no experts, so no router (site {site!r}). "
            f"moe_router exists on the MoE models ({moe} and their variants); use mlp_out for the MLP output here."
        )
    if site in HYBRID_SITES and not spec.is_hybrid:
        return (
            f"{spec.name} has no linear-attention layers (site {site!r} is Qwen3.5's Gated DeltaNet output); "
            "use attn_out for its attention output."
        )
    layer_type = spec.layer_type(layer)
    if site in ATTENTION_SITES and layer_type != FULL_ATTENTION:
        full = spec.full_attention_layers()
        return (
            f"layer {layer} of {spec.name} is a {layer_type} (Gated DeltaNet) layer: it has no softmax attention, "
            f"so no {site!r}. Use site 'linear_attn_out' for its mixer output there, or {site} on a full_attention "
            f"layer ({', '.join(map(str, full[:8]))}{', ...' if len(full) > 8 else ''})."
        )
    if site in HYBRID_SITES and layer_type != LINEAR_ATTENTION:
        return (
            f"layer {layer} of {spec.name} is a {layer_type} layer: it has softmax attention, not Gated DeltaNet; "
            "use site 'attn_out' there."
        )
    return None


def hook_name(site: str, layer: int, backend: str = "hooked", spec: Qwen3ModelSpec | None = None) -> str:
    """Hook name of `site` at `layer` in `backend`; with `spec`, the layer, the backend and the site are
    checked against that model (its layer count, its kind, the type of the layer)."""
    check_site(site)
    check_backend(backend)
    if spec is not None:
        spec.check_layer(layer)
        check_model_backend(spec, backend)
        problem = _site_error(spec, site, layer)
        if problem:
            raise SiteUnavailableError(problem)
    elif not isinstance(layer, int) or layer < 0:
        raise LayerOutOfRangeError(f"layer must be a non-negative int, got {layer!r}.")
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
        for site in ALL_SITES:
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
    """Width of the activation an SAE at this site reads (router: one logit per expert)."""
    check_site(site)
    if site == "moe_router":
        if not spec.is_moe:
            raise SiteUnavailableError(_site_error(spec, site, 0))
        return spec.n_experts
    return spec.d_attn if site == "attn_z" else spec.d_model


def site_hooks(spec: Qwen3ModelSpec, backend: str = "hooked") -> list[dict]:
    """Every (layer, site) hook of a model in one backend, for listings and plans."""
    rows = []
    for layer in range(spec.n_layers):
        for site in layer_sites(spec, layer, backend):
            rows.append(
                dict(
                    layer=layer, site=site, hook_name=hook_name(site, layer, backend, spec), d_in=site_d_in(spec, site)
                )
            )
    return rows


# ---- transcoders: (layer) -> (input hook, output hook) ---------------------------------------------------------
# A transcoder reads the MLP's input and writes the MLP's output (on MoE models: the sparse MoE block's). Its input
# hook per backend:
# - hooked: `blocks.L.ln2.hook_normalized`, the post-attention activation divided by its RMS, *before* the RMSNorm
#   weight (HookedTransformer loaded unprocessed has no hook on the weighted MLP input). This is the pair SAELens'
#   HookedSAETransformer splices (it captures the input hook and replaces the output hook) and SAELens' Gemma Scope
#   transcoder convention; the RMSNorm weight becomes part of what the encoder learns (a converter to a post-weight
#   input, e.g. circuit-tracer's `mlp.hook_in`, divides W_enc's rows by the ln2 weight).
# - bridge / hf: the post-attention RMSNorm output (site mlp_in: `blocks.L.ln2.hook_out` /
#   `model.layers.L.post_attention_layernorm`), the MLP's actual input, weight included.
TRANSCODER_INPUT_HOOKED = "blocks.{layer}.ln2.hook_normalized"
TRANSCODER_OUTPUT_SITE = "mlp_out"
TRANSCODER_INPUT_SITE = "mlp_in"


def transcoder_hooks(layer: int, backend: str = "hooked", spec: Qwen3ModelSpec | None = None) -> tuple[str, str]:
    """(input hook, output hook) of the transcoder of `layer`'s MLP in `backend`; with `spec`, the layer and backend
    are checked against that model (errors name the layer range or the backends that run it)."""
    check_backend(backend)
    out = hook_name(TRANSCODER_OUTPUT_SITE, layer, backend, spec)  # checks layer, model and backend
    if backend == "hooked":
        return TRANSCODER_INPUT_HOOKED.format(layer=layer), out
    return hook_name(TRANSCODER_INPUT_SITE, layer, backend, spec), out


def parse_transcoder_hooks(hook_in: str, hook_out: str, backend: str | None = None) -> int:
    """Reverse of `transcoder_hooks`: the layer of an (input hook, output hook) pair; UnknownHookError when the pair
    is not one layer's MLP input and output in one backend."""
    backends = [check_backend(backend)] if backend else list(BACKENDS)
    for b in backends:
        for layer_text in re.findall(r"\.(\d+)\.", hook_in)[:1]:
            layer = int(layer_text)
            if (hook_in, hook_out) == transcoder_hooks(layer, b):
                return layer
    raise UnknownHookError(
        f"({hook_in!r}, {hook_out!r}) is not a Qwen3 transcoder's hook pair in backend(s) {', '.join(backends)}; "
        f"expected the MLP input and output of one layer, e.g. {transcoder_hooks(3, backends[0])}."
    )

"""Activation interventions that stay correct while a Qwen3 model generates with its KV cache.

Why our own small library: steering a Qwen3 model means (1) finding the right hook in whichever backend
the model was loaded with (an SAE trained on a HookedTransformer names `blocks.L.hook_resid_post`, the
bridge calls it `blocks.L.hook_out`), (2) editing only the positions asked for although a KV-cached
generate shows each hook the prompt once and then one token at a time, and (3) editing an SAE latent
*without* swapping the activation for the SAE's lossy reconstruction: `x' = x + decode(z') - decode(z)`
keeps the error term, so the edit changes exactly the latent's contribution and nothing else.

Every intervention is a plain dataclass; `steer(model, [...])` validates them all (site, width, feature
index) before adding any hook and removes its hooks on exit, also when the block raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.loading import backend_of, model_spec
from qwen3_scope.model.sites import check_site, hook_name, parse_hook_name, site_d_in
from qwen3_scope.saes.loaders import SAEModelMismatchError

POSITIONS = ("all", "prompt", "generated", "post_instruction")


class SteeringError(ConfigError):
    """An intervention that cannot be applied to this model (backend, shape, positions)."""


class FeatureIndexError(ConfigError, IndexError):
    """A latent index outside the SAE's dictionary."""


def _check_positions(positions: str) -> str:
    if positions not in POSITIONS:
        raise SteeringError(f"unknown positions {positions!r}; choose one of {', '.join(POSITIONS)}.")
    return positions


def check_feature(sae: Any, feature: int) -> int:
    d_sae = sae.cfg.d_sae
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < d_sae:
        raise FeatureIndexError(
            f"feature {feature!r} is out of range for this SAE ({sae.cfg.metadata.hook_name}, d_sae={d_sae}); "
            f"use an index in 0..{d_sae - 1}."
        )
    return feature


def sae_target(sae: Any) -> tuple[int, str]:
    """(layer, site) an SAE reads, from its hook name in any backend's naming."""
    name = sae.cfg.metadata.hook_name
    if not name:
        raise SteeringError(
            "this SAE has no metadata.hook_name, so there is no site to steer; set it on the SAE config."
        )
    return parse_hook_name(name)


class PositionTracker:
    """Absolute positions of the tokens a hook sees, across KV-cached generation steps.

    A call with more than one token starts a new sequence at position 0 (the prompt); single-token calls
    continue it (generated tokens). A first call of one token is a one-token prompt. Generation without
    a KV cache re-feeds the whole sequence and so looks like a new prompt each step: use the KV cache
    (the default of HookedTransformer/TransformerBridge.generate) for "prompt"/"generated".

    "post_instruction" edits only the last `tail` prompt positions: the chat template after the user's
    message, where a chat model decides how to answer (left-padded batches end-align them); generated
    tokens are left alone, so the model continues in its own voice. `set_prompt_lengths` makes each row
    of the next multi-token call a prompt of that length followed by continuation tokens (for scoring
    prompts + completions in one right-padded forward pass).
    """

    def __init__(self, which: str = "all", tail: int = 0):
        self.which = _check_positions(which)
        self.tail = tail
        self.forced: list[int] | None = None
        self.reset()

    def reset(self) -> None:
        self.prompt_len: torch.Tensor | None = None  # [batch] or [1]
        self.next = 0

    def set_prompt_lengths(self, lengths: Sequence[int] | None) -> None:
        """Per-row prompt lengths of the next multi-token call (right-padded prompt + continuation)."""
        self.forced = None if lengths is None else [int(n) for n in lengths]
        self.reset()

    def mask(self, batch: int, seq_len: int, device: torch.device) -> torch.Tensor | None:
        """Boolean [batch or 1, seq_len] mask of positions to edit in this call (None = every position)."""
        if seq_len > 1 or self.prompt_len is None:
            if self.forced is not None and len(self.forced) != batch:
                raise SteeringError(
                    f"{len(self.forced)} prompt lengths were announced for a batch of {batch} sequences."
                )
            start, self.prompt_len = (
                0,
                torch.tensor(self.forced if self.forced is not None else [seq_len], device=device),
            )
        else:
            start = self.next
        self.next = start + seq_len
        if self.which == "all":
            return None
        pos, length = torch.arange(start, start + seq_len, device=device)[None, :], self.prompt_len[:, None]
        if self.which == "prompt":
            return pos < length
        if self.which == "generated":
            return pos >= length
        return (pos >= length - self.tail) & (pos < length)


def post_instruction_length(tokenizer: Any) -> int:
    """Tokens of the Qwen3 template after a user message, from `<|im_end|>` to the end of the generation prompt."""
    ids = tokenizer(format_chat(tokenizer, "x"), add_special_tokens=False)["input_ids"]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = [i for i, t in enumerate(ids) if t == im_end]
    if not ends:
        raise SteeringError(
            "this tokenizer's chat template has no <|im_end|>; positions='post_instruction' needs Qwen3's template."
        )
    return len(ids) - ends[-1]


@dataclass
class Intervention:
    """Base: where to edit (layer, site) and which positions; subclasses say how."""

    positions: str = field(default="all", kw_only=True)

    def target(self) -> tuple[int, str]:
        raise NotImplementedError

    def width(self) -> int:
        raise NotImplementedError

    def validate(self, spec: Any) -> None:
        _check_positions(self.positions)
        layer, site = self.target()
        check_site(site)
        spec.check_layer(layer)
        expected = site_d_in(spec, site)
        if self.width() != expected:
            raise SAEModelMismatchError(
                f"{type(self).__name__} at {site} layer {layer} is {self.width()} wide, but {spec.name}'s {site} "
                f"is {expected} wide; use an SAE or direction built for this model."
            )

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The change to add to activation `x` (shape [batch, pos, ...]) at the selected positions."""
        raise NotImplementedError


@dataclass
class _DirectionIntervention(Intervention):
    """A vector in the site's activation space, placed by `hook` (any backend's name) or (`site`, `layer`)."""

    direction: torch.Tensor
    site: str | None = None
    layer: int | None = None
    hook: str | None = None

    def target(self) -> tuple[int, str]:
        if self.hook is not None:
            return parse_hook_name(self.hook)
        if self.site is None or self.layer is None:
            raise SteeringError(f"{type(self).__name__} needs hook=... or both site=... and layer=....")
        return self.layer, check_site(self.site)

    def width(self) -> int:
        if self.direction.ndim != 1:
            raise SteeringError(f"a steering direction must be a vector, got shape {tuple(self.direction.shape)}.")
        return self.direction.shape[0]

    def unit(self) -> torch.Tensor:
        d = self.direction.detach().float()
        norm = d.norm()
        if norm == 0:
            raise SteeringError("cannot scale a zero direction to unit norm.")
        return d / norm


@dataclass
class AddDirection(_DirectionIntervention):
    """x' = x + alpha * d (d scaled to unit norm first when `unit_norm`): activation addition."""

    alpha: float = 1.0
    unit_norm: bool = False

    def vector(self) -> torch.Tensor:
        return self.alpha * (self.unit() if self.unit_norm else self.direction.detach().float())

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vector().to(x.device, x.dtype)
        return v.reshape(x.shape[2:]) if x.ndim > 3 else v  # attn_z in HookedTransformer is [b, p, heads, d_head]


@dataclass
class AblateDirection(_DirectionIntervention):
    """x' = x - (x . d) d with d the unit direction: Arditi et al.'s directional ablation."""

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        d = self.unit().to(x.device, x.dtype)
        flat = x.flatten(2) if x.ndim > 3 else x
        return (-(flat @ d)[..., None] * d).reshape(x.shape)


def steer_feature(
    sae: Any, feature: int, alpha: float, unit_norm: bool = False, positions: str = "all"
) -> AddDirection:
    """Qwen-Scope style steering, h' = h + alpha * W_dec[feature], at the SAE's own site and layer."""
    check_feature(sae, feature)
    layer, site = sae_target(sae)
    return AddDirection(
        direction=sae.W_dec[feature].detach().clone(),
        alpha=alpha,
        site=site,
        layer=layer,
        unit_norm=unit_norm,
        positions=positions,
    )


@dataclass
class EditFeature(Intervention):
    """Set latent `feature` to `value` (or multiply it by `scale`) keeping the SAE error term.

    x' = x + decode(z') - decode(z) with z = encode(x): the residual the SAE fails to reconstruct is kept,
    so only the latent's own contribution changes (an inactive latent with value 0 changes nothing).
    """

    sae: Any
    feature: int
    value: float | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        check_feature(self.sae, self.feature)
        if (self.value is None) == (self.scale is None):
            raise SteeringError("EditFeature needs exactly one of value=... (clamp) or scale=... (suppress/amplify).")

    def target(self) -> tuple[int, str]:
        return sae_target(self.sae)

    def width(self) -> int:
        return self.sae.cfg.d_in

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.ndim > 3 and not getattr(self.sae, "hook_z_reshaping_mode", False)  # per-head attn_z, flat SAE
        x_in = (x.flatten(2) if flat else x).to(self.sae.dtype)
        z = self.sae.encode(x_in)
        edited = z.clone()
        edited[..., self.feature] = self.value if self.value is not None else z[..., self.feature] * self.scale
        return (self.sae.decode(edited) - self.sae.decode(z)).reshape(x.shape).to(x.dtype)


def clamp_feature(sae: Any, feature: int, value: float, positions: str = "all") -> EditFeature:
    return EditFeature(sae=sae, feature=feature, value=value, positions=positions)


def ablate_feature(sae: Any, feature: int, positions: str = "all") -> EditFeature:
    """Zero-ablate a latent with the error term kept."""
    return EditFeature(sae=sae, feature=feature, value=0.0, positions=positions)


def scale_feature(sae: Any, feature: int, scale: float, positions: str = "all") -> EditFeature:
    """Suppress (0 <= scale < 1), negate (< 0) or amplify (> 1) a latent with the error term kept."""
    return EditFeature(sae=sae, feature=feature, scale=scale, positions=positions)


def _model_backend(model: Any) -> tuple[str, Any]:
    backend = backend_of(model)
    if backend == "hf":
        raise SteeringError(
            "steering needs hooks that can replace activations during generate(); SAELens' HookedProxyLM "
            "(backend='hf') has neither. Load the model with backend='hooked' or backend='bridge'."
        )
    return backend, model_spec(model)


def resolve_hook(model: Any, layer: int, site: str) -> str:
    """The hook name of (layer, site) in this model's backend; an attached SAE's output hook if one sits there."""
    backend, spec = _model_backend(model)
    name = hook_name(site, layer, backend, spec)
    if name not in model.hook_dict and f"{name}.hook_sae_output" in model.hook_dict:
        return f"{name}.hook_sae_output"  # HookedSAETransformer.add_sae replaced the hook point with an SAE
    return name


def _hook_fn(iv: Intervention, tracker: PositionTracker) -> Callable:
    def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
        mask = tracker.mask(x.shape[0], x.shape[1], x.device)
        delta = iv.delta(x)
        if mask is None:
            return x + delta
        return x + delta.expand_as(x) * mask.reshape(*mask.shape, *([1] * (x.ndim - 2))).to(x.dtype)

    return hook


class SteeringHandle:
    """What `steer` yields: the hooks it added and their position trackers."""

    def __init__(self, hooks: list[tuple[str, Callable]], trackers: list[PositionTracker]):
        self.hooks = hooks
        self.trackers = trackers

    @property
    def hook_names(self) -> list[str]:
        return [name for name, _ in self.hooks]

    def reset_positions(self) -> None:
        """Start position tracking afresh (before a new generate call inside the same `with`)."""
        for tracker in self.trackers:
            tracker.reset()

    def set_prompt_lengths(self, lengths: Sequence[int] | None) -> None:
        """The next multi-token call holds, per row, a prompt of that many tokens followed by continuation
        tokens (and right padding); None returns to "a multi-token call is a prompt"."""
        for tracker in self.trackers:
            tracker.set_prompt_lengths(lengths)

    @property
    def position_dependent(self) -> bool:
        return any(t.which != "all" for t in self.trackers)


@contextmanager
def steer(model: Any, interventions: Intervention | Sequence[Intervention]) -> Iterator[SteeringHandle]:
    """Apply interventions inside a `with` block (forward, run_with_cache, generate with KV cache).

    All are validated before any hook is added; the hooks go through the model's own `hooks()` context
    (HookedTransformer, HookedSAETransformer, TransformerBridge), which removes them on exit and on error.
    """
    ivs = [interventions] if isinstance(interventions, Intervention) else list(interventions)
    _, spec = _model_backend(model)
    hooks, trackers = [], []
    tail = post_instruction_length(model.tokenizer) if any(iv.positions == "post_instruction" for iv in ivs) else 0
    for iv in ivs:
        if not isinstance(iv, Intervention):
            raise SteeringError(f"{iv!r} is not an Intervention (AddDirection, EditFeature, steer_feature(...)).")
        iv.validate(spec)
        layer, site = iv.target()
        tracker = PositionTracker(iv.positions, tail)
        trackers.append(tracker)
        hooks.append((resolve_hook(model, layer, site), _hook_fn(iv, tracker)))
    with model.hooks(fwd_hooks=hooks):
        yield SteeringHandle(hooks, trackers)

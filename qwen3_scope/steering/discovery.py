"""Which SAE latents (and which raw direction) separate two prompt sets, at the post-instruction tokens.

Why the post-instruction tokens: in a chat model the decision how to answer (refuse, which language)
is formed on the template tokens after the user's message, `<|im_end|>\\n<|im_start|>assistant\\n
<think>\\n\\n</think>\\n\\n` for Qwen3 in non-thinking mode (Arditi et al. take their refusal direction
there). One forward pass per batch caches every site of the suite; each SAE encodes its own site.

The ranking score is comparable across sites and layers: (mean_pos - mean_neg) * ||W_dec[f]|| /
resid_norm, the mean shift the latent writes along its decoder direction in units of the residual
stream's typical norm at that layer (resid_norm = mean L2 norm of resid_post there, at the same
positions, both sets pooled). The residual stream is what every site writes into, so a shift in
attn_out and one in resid_post are measured on the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from qwen3_scope.core.devices import DTYPES, dtype_name
from qwen3_scope.core.errors import ConfigError, MissingFileError, ReleaseError
from qwen3_scope.model.chat import format_chat, special_token_ids
from qwen3_scope.naming import is_transcoder_id, sae_folders
from qwen3_scope.releases import pretrained_directory
from qwen3_scope.steering.generation import encode_prompts, run_and_cache
from qwen3_scope.steering.interventions import SteeringError, resolve_hook, sae_target

POSITION_MODES = ("post_instruction", "last", "all")


def load_suite(
    suite_dir: str | Path | None = None,
    release: str | None = None,
    sae_ids: Sequence[str] | None = None,
    model_key: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
) -> dict[str, Any]:
    """SAEs by id: every SAE folder (cfg.json + sae_weights.safetensors) under `suite_dir`, or `sae_ids`
    of a SAELens release (default: every id of `release` that starts with `model_key/`); on `device`, in
    `dtype` (default: as saved). Without `sae_ids`, a suite's transcoders (`transcoder/layer_<L>`) are left out:
    steering and the applications work on SAE latents."""
    saes = _load_suite(suite_dir, release, sae_ids, model_key, device)
    if dtype is not None:
        for sae in saes.values():
            sae.to(dtype=DTYPES[dtype_name(dtype)])
    return saes


def _load_suite(
    suite_dir: str | Path | None, release: str | None, sae_ids: Sequence[str] | None, model_key: str | None, device: str
) -> dict[str, Any]:
    if suite_dir is not None:
        root = Path(suite_dir).expanduser()
        if not root.is_dir():
            raise MissingFileError(
                f"suite directory {root} does not exist; train one with `qwen3-scope train` or pass --release."
            )
        found = {
            i: f for i, f in sae_folders(root).items() if (i in set(sae_ids) if sae_ids else not is_transcoder_id(i))
        }
        if not found:
            raise MissingFileError(
                f"no SAEs under {root} (expected folders with cfg.json and sae_weights.safetensors)."
            )
        return {sae_id: SAE.load_from_disk(f, device=device) for sae_id, f in found.items()}
    if release is None:
        raise ConfigError("pass a suite directory or a SAELens release (with sae ids) to steer with.")

    directory = pretrained_directory()
    if release not in directory:
        raise ReleaseError(
            f"release {release!r} is not in SAELens' directory; `qwen3-scope releases list` shows what is."
        )
    ids = (
        list(sae_ids)
        if sae_ids
        else [
            i
            for i in directory[release].saes_map
            if model_key and i.startswith(f"{model_key}/") and not is_transcoder_id(i)
        ]
    )
    if not ids:
        raise ReleaseError(
            f"release {release!r} has no SAE ids for model {model_key!r}; pass --sae-ids, or train a suite "
            "(`qwen3-scope train`) and pass --suite DIR."
        )
    return {sae_id: SAE.from_pretrained(release, sae_id, device=device) for sae_id in ids}


def select_positions(
    ids: Sequence[int], im_end_id: int, mode: str = "post_instruction", skip: frozenset[int] = frozenset()
) -> list[int]:
    """Positions to average over in one formatted prompt: from the last `<|im_end|>` on (the
    post-instruction template), the last token, or all; tokens in `skip` (control tokens) left out."""
    if mode == "all":
        start = 0
    elif mode == "last":
        start = len(ids) - 1
    elif mode == "post_instruction":
        ends = [i for i, t in enumerate(ids) if t == im_end_id]
        if not ends:
            raise SteeringError(
                "a prompt has no <|im_end|> token: format prompts with qwen3_scope.model.chat.format_chat first."
            )
        start = ends[-1]
    else:
        raise SteeringError(f"unknown position mode {mode!r}; choose one of {', '.join(POSITION_MODES)}.")
    picked = [i for i in range(start, len(ids)) if ids[i] not in skip]
    if not picked:
        raise SteeringError(
            f"no token left to read in mode {mode!r} once control tokens are skipped; use skip_control=False."
        )
    return picked


@dataclass
class Contrast:
    """Per-latent statistics of two prompt sets, plus raw difference-in-means directions per site."""

    features: pd.DataFrame
    directions: dict[tuple[int, str], torch.Tensor]
    site_norms: dict[tuple[int, str], float]
    resid_norms: dict[int, float]
    hooks: dict[tuple[int, str], str] = field(default_factory=dict)

    def top(self, k: int, sign: int = 1) -> pd.DataFrame:
        """The k latents with the largest (sign=1) or most negative (sign=-1) score."""
        return self.features.sort_values("score", ascending=sign < 0).head(k).reset_index(drop=True)


class _Sums:
    def __init__(self):
        self.total = None
        self.active = None
        self.count = 0

    def add(self, x: torch.Tensor) -> None:  # x: [n, width]
        total, active = x.sum(0).double(), (x > 0).sum(0).double()
        self.total = total if self.total is None else self.total + total
        self.active = active if self.active is None else self.active + active
        self.count += x.shape[0]

    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2) if x.ndim > 3 else x  # per-head attn_z -> concatenated heads


@torch.no_grad()
def contrast(
    model: Any,
    saes: dict[str, Any],
    positive: Sequence[str],
    negative: Sequence[str],
    positions: str = "post_instruction",
    batch_size: int = 16,
    formatted: bool = False,
    progress: bool = True,
    skip_control: bool = True,
) -> Contrast:
    """Mean SAE activations on `positive` vs `negative` prompts (raw user messages, chat-formatted here
    in non-thinking mode unless `formatted`), ranked by the cross-site score of the module docstring.

    `skip_control` leaves Qwen3's control tokens (`<|im_end|>`, `<|im_start|>`, `<think>`, ...) out of the
    averages: suites are trained with them excluded, so SAEs never saw their (outlier) activations."""
    if not positive or not negative:
        raise SteeringError("contrast needs prompts in both sets; one of them is empty.")
    tokenizer = model.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    skip = frozenset(special_token_ids(tokenizer)) if skip_control else frozenset()
    targets = {sae_id: sae_target(sae) for sae_id, sae in saes.items()}
    sites = sorted(set(targets.values()) | {(layer, "resid_post") for layer, _ in targets.values()})
    hooks = {t: resolve_hook(model, *t) for t in sites}
    raw = {label: {t: _Sums() for t in sites} for label in ("pos", "neg")}
    lat = {label: {s: _Sums() for s in saes} for label in ("pos", "neg")}
    norms = {t: [0.0, 0] for t in sites}
    for label, prompts in (("pos", positive), ("neg", negative)):
        texts = list(prompts) if formatted else [format_chat(tokenizer, p) for p in prompts]
        seqs = encode_prompts(tokenizer, texts)
        spans = [select_positions(ids, im_end, positions, skip) for ids in seqs]
        batches = run_and_cache(model, seqs, list(hooks.values()), batch_size)
        for rows, cache in tqdm(
            batches, total=-(-len(seqs) // batch_size), desc=f"contrast {label}", disable=not progress, leave=False
        ):
            for t in sites:
                acts = _flat(cache[hooks[t]])
                picked = torch.cat([acts[i - rows.start, spans[i]] for i in rows]).float()
                raw[label][t].add(picked)
                norms[t][0] += picked.norm(dim=-1).sum().item()
                norms[t][1] += picked.shape[0]
                for sae_id, sae in saes.items():
                    if targets[sae_id] == t:
                        lat[label][sae_id].add(sae.encode(picked.to(sae.dtype)).float())
    site_norms = {t: total / max(n, 1) for t, (total, n) in norms.items()}
    resid_norms = {layer: norm for (layer, site), norm in site_norms.items() if site == "resid_post"}
    directions = {t: (raw["pos"][t].mean() - raw["neg"][t].mean()).float() for t in sites}
    frames = []
    for sae_id, sae in saes.items():
        layer, site = targets[sae_id]
        pos, neg = lat["pos"][sae_id], lat["neg"][sae_id]
        diff = (pos.mean() - neg.mean()).float()
        dec_norm = sae.W_dec.detach().float().norm(dim=-1).cpu()
        frames.append(
            pd.DataFrame(
                {
                    "sae_id": sae_id,
                    "layer": layer,
                    "site": site,
                    "feature": range(sae.cfg.d_sae),
                    "mean_pos": pos.mean().float().cpu().numpy(),
                    "mean_neg": neg.mean().float().cpu().numpy(),
                    "freq_pos": (pos.active / pos.count).float().cpu().numpy(),
                    "freq_neg": (neg.active / neg.count).float().cpu().numpy(),
                    "diff": diff.cpu().numpy(),
                    "score": (diff.cpu() * dec_norm / resid_norms[layer]).numpy(),
                }
            )
        )
    features = pd.concat(frames, ignore_index=True).sort_values("score", ascending=False, ignore_index=True)
    return Contrast(
        features=features, directions=directions, site_norms=site_norms, resid_norms=resid_norms, hooks=hooks
    )

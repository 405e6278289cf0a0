"""Load a Qwen3 model for any SAELens backend, from a hub name or a local directory, fully offline.

Why: TransformerLens 3.9 refuses local paths in `HookedTransformer.from_pretrained*` (its official-name
check runs first) and SAELens prepends a BOS that Qwen3 does not have. We fix both from the outside:
the path is registered as an official name, and every backend gets `default_prepend_bos=False`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import transformer_lens.supported_models as supported
from sae_lens import HookedSAETransformer, SAETransformerBridge
from sae_lens.load_model import HookedProxyLM
from safetensors import safe_open
from tokenizers import Tokenizer, models
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.loading_from_pretrained import convert_hf_model_config
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from qwen3_scope.core.devices import torch_dtype
from qwen3_scope.core.errors import ConfigError, CorruptFileError, MissingFileError, Qwen3ScopeError
from qwen3_scope.model.chat import QWEN3_SPECIAL_TOKENS
from qwen3_scope.model.family import Qwen3ModelSpec, resolve_model
from qwen3_scope.model.sites import (
    UnknownHookError,
    check_backend,
    check_model_backend,
    hook_name,
    layer_sites,
    model_backends,
    site_d_in,
)


class WeightsNotFoundError(MissingFileError):
    """A checkpoint without weight or tokenizer files, or a hub model that is not reachable."""


class CorruptWeightsError(CorruptFileError):
    """A checkpoint file that exists but cannot be read (truncated or corrupt safetensors, tokenizer, config)."""


class UnsupportedModelError(ConfigError, TypeError):
    """A model object qwen3-scope cannot hook or read the shape of (not loaded with `load_model`)."""


def register_with_transformer_lens(source: str) -> None:
    """Make TransformerLens accept `source` (a local dir or a family name it does not list)."""
    if source not in supported.OFFICIAL_MODEL_NAMES:
        supported.OFFICIAL_MODEL_NAMES.append(source)


def _check_local_checkpoint(path: Path) -> None:
    weights = list(path.glob("*.safetensors")) + list(path.glob("pytorch_model*.bin"))
    if not weights:
        raise WeightsNotFoundError(
            f"{path} has a config.json but no weight files (*.safetensors); the checkpoint is incomplete. "
            "Re-save it with model.save_pretrained(dir) or copy the missing weight files in."
        )
    for file in weights:
        if file.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error type for every header problem
            raise CorruptWeightsError(
                f"{file} is not a readable safetensors file ({err}); it is corrupt or truncated. "
                "Re-save the model with save_pretrained(dir) or copy the file again."
            ) from err
    _check_tokenizer_files(path)


def _check_tokenizer_files(path: Path) -> None:
    """The tokenizer files of a local checkpoint exist and are JSON (transformers' own error names no file)."""
    names = ("tokenizer.json", "tokenizer_config.json")
    if not any((path / name).is_file() for name in names):
        raise WeightsNotFoundError(
            f"{path} has no tokenizer files; save the tokenizer next to the model (tokenizer.save_pretrained(dir))."
        )
    for name in names:
        file = path / name
        if not file.is_file():
            continue
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CorruptWeightsError(
                f"{file} is not valid JSON ({err}); it is corrupt or truncated, expected the tokenizer saved by "
                "tokenizer.save_pretrained(dir). Save the tokenizer again or copy the file again."
            ) from err


def _explain_load_failure(spec: Qwen3ModelSpec, err: Exception) -> Exception:
    text = str(err)
    if not spec.is_local and (isinstance(err, OSError) or "offline" in text.lower() or "connect" in text.lower()):
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        return WeightsNotFoundError(
            f"could not load {spec.source} from the Hugging Face hub{' (HF_HUB_OFFLINE=1)' if offline else ''}: "
            f"{text.splitlines()[0] if text else type(err).__name__}. Download it once with network access "
            "(it is then cached), or pass the path of a local checkpoint directory."
        )
    if spec.is_local and isinstance(err, (OSError, ValueError)) and not isinstance(err, Qwen3ScopeError):
        return CorruptWeightsError(
            f"could not load the local checkpoint {spec.source} ({type(err).__name__}: "
            f"{text.splitlines()[0] if text else 'no detail'}); it is incomplete or corrupt. Re-save it with "
            "model.save_pretrained(dir) and tokenizer.save_pretrained(dir), or copy it again."
        )
    return err


def load_tokenizer(name_or_path: str | Path | Qwen3ModelSpec):
    spec = name_or_path if isinstance(name_or_path, Qwen3ModelSpec) else resolve_model(name_or_path)
    if spec.is_local:
        _check_tokenizer_files(Path(spec.source))
    try:
        return AutoTokenizer.from_pretrained(spec.source)
    except (OSError, ValueError) as err:
        raise _explain_load_failure(spec, err) from err


def load_model(
    name_or_path: str | Path | Qwen3ModelSpec,
    backend: str = "hooked",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    hook_names: list[str] | None = None,
    **from_pretrained_kwargs: Any,
):
    """Load a Qwen3 model ready for SAELens.

    backend: "hooked" -> `HookedSAETransformer` (unprocessed weights, so activations equal HF's),
    "bridge" -> `SAETransformerBridge`, "hf" -> SAELens' `HookedProxyLM` around the HF model
    (`hook_names` restricts which modules it hooks). None of them prepends a BOS token.
    """
    check_backend(backend)
    spec = name_or_path if isinstance(name_or_path, Qwen3ModelSpec) else resolve_model(name_or_path)
    check_model_backend(spec, backend)  # HookedTransformer: dense Qwen3 only, a clear error before any loading
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype)
    if spec.is_local:
        _check_local_checkpoint(Path(spec.source))
    try:
        if backend == "hooked":
            register_with_transformer_lens(spec.source)
            model = HookedSAETransformer.from_pretrained_no_processing(
                spec.source, device=device, dtype=dtype, default_prepend_bos=False, **from_pretrained_kwargs
            )
        elif backend == "bridge":
            text_config = _text_config_kwargs(spec)
            if text_config:
                model = _boot_text_model(spec, text_config, device, dtype, **from_pretrained_kwargs)
            else:
                model = SAETransformerBridge.boot_transformers(
                    spec.source, device=device, dtype=dtype, **from_pretrained_kwargs
                )
            model.cfg.default_prepend_bos = False
            if spec.is_hybrid:
                gated_delta_net_compat(model.original_model)
        else:
            kwargs = {**_text_config_kwargs(spec), **from_pretrained_kwargs}
            hf_model = AutoModelForCausalLM.from_pretrained(spec.source, dtype=dtype, **kwargs).to(device)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to's decorator wrongly
            hf_model.eval()
            model = HookedProxyLM(hf_model, AutoTokenizer.from_pretrained(spec.source), hook_names=hook_names)
    except (OSError, ValueError, RuntimeError) as err:
        raise _explain_load_failure(spec, err) from err
    model.qwen3_spec = spec  # the shape and source travel with the model for later stages
    return model


def model_spec(model: Any) -> Qwen3ModelSpec:
    """The spec of a model loaded by `load_model` (or inferred from a HookedTransformer config)."""
    spec = getattr(model, "qwen3_spec", None)
    if spec is not None:
        return spec
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "n_layers"):
        return Qwen3ModelSpec(
            name=getattr(cfg, "model_name", "model"),
            n_layers=cfg.n_layers,
            d_model=cfg.d_model,
            d_mlp=cfg.d_mlp,
            n_heads=cfg.n_heads,
            n_kv_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
            head_dim=cfg.d_head,
            vocab_size=cfg.d_vocab,
        )
    raise UnsupportedModelError("cannot tell the Qwen3 shape of this model; load it with qwen3_scope.load_model.")


def backend_of(model: Any) -> str:
    """Which hook-name scheme a loaded model uses."""
    if isinstance(model, HookedProxyLM):
        return "hf"
    if isinstance(model, HookedTransformer):
        return "hooked"
    if isinstance(model, TransformerBridge):
        return "bridge"
    raise UnsupportedModelError(
        f"{type(model).__name__} is not a model qwen3_scope can hook; use qwen3_scope.load_model."
    )


def _placeholder_tokenizer():
    """A tokenizer with only Qwen3's control tokens, so meta-device models can be booted without files."""
    vocab = {token: i for i, token in enumerate(QWEN3_SPECIAL_TOKENS)}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>")),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def meta_model(name_or_path: str | Path, backend: str = "hooked", n_layers: int | None = None):
    """The model at its exact published shape on the meta device: no weights, no memory, no network.

    Why: it proves the adapters (hook names, d_in) for 4B/8B/32B configs on a laptop, and lets planners
    read real parameter shapes.
    """
    check_backend(backend)
    spec = resolve_model(name_or_path)
    check_model_backend(spec, backend)
    config = spec.to_hf_config(n_layers=n_layers)
    if spec.is_moe:
        # The default expert loop indexes tokens with torch.nonzero, which has no meta implementation;
        # the batched expert kernel computes the same function without data-dependent shapes.
        config._experts_implementation = "batched_mm"
    with torch.device("meta"):
        hf_model = AutoModelForCausalLM.from_config(config)
    if spec.is_hybrid:
        gated_delta_net_compat(hf_model)
    if backend == "hf":
        model = HookedProxyLM(hf_model, _placeholder_tokenizer())
    else:
        with tempfile.TemporaryDirectory() as config_dir:
            config.save_pretrained(config_dir)
            if backend == "hooked":
                cfg = HookedTransformerConfig(**convert_hf_model_config(config_dir), device="meta")
                with torch.device("meta"):
                    model = HookedSAETransformer(cfg, move_to_device=False)
            else:
                model = SAETransformerBridge.boot_transformers(
                    config_dir, hf_model=hf_model, tokenizer=_placeholder_tokenizer(), device="meta"
                )
    model.qwen3_spec = spec if n_layers is None else replace(spec, n_layers=n_layers)
    return model


def _text_config_kwargs(spec: Qwen3ModelSpec) -> dict[str, Any]:
    """Published Qwen3.5 checkpoints are multimodal (`Qwen3_5ForConditionalGeneration`); SAEs read the text
    model, so the hf backend loads `Qwen3_5(Moe)ForCausalLM` from the checkpoint's `text_config` (as
    TransformerLens' bridge does)."""
    if not spec.is_hybrid:
        return {}
    config = AutoConfig.from_pretrained(spec.source)
    return {"config": config.text_config} if hasattr(config, "text_config") else {}


def _boot_text_model(spec: Qwen3ModelSpec, text_config: dict[str, Any], device: Any, dtype: torch.dtype, **kwargs: Any):
    """TransformerBridge over the text model of a multimodal Qwen3.5 checkpoint.

    Why: booted from the checkpoint itself, TransformerLens picks its multimodal adapter (which needs
    torchvision and nests the layers under `model.language_model`); SAEs read the text model, so we load
    `Qwen3_5(Moe)ForCausalLM` from `text_config` and boot the text-only adapter on it (`blocks.L` names).
    """
    hf_model = AutoModelForCausalLM.from_pretrained(spec.source, dtype=dtype, **text_config, **kwargs).to(device)
    with tempfile.TemporaryDirectory() as config_dir:
        hf_model.config.save_pretrained(config_dir)
        model = SAETransformerBridge.boot_transformers(
            config_dir,
            hf_model=hf_model,
            tokenizer=AutoTokenizer.from_pretrained(spec.source),
            device=device,
            dtype=dtype,
        )
    model.cfg.model_name = spec.source
    return model


def gated_delta_net_compat(hf_model: torch.nn.Module) -> int:
    """Let TransformerLens 3.9's GatedDeltaNetBridge run transformers 5.24's Qwen3.5 linear-attention layers.

    Why: the bridge's hooked prefill path reads `causal_conv1d_fn` and `chunk_gated_delta_rule` off the HF
    module, attributes transformers 5.24 no longer sets (its kernels are module-level functions). We set them
    to what HF itself calls: no fused conv (the bridge then runs the same depthwise conv + SiLU) and HF's own
    `torch_chunk_gated_delta_rule`, whose torch fallback runs on CPU without flash-linear-attention. Returns
    how many layers were patched; HF's own forward does not read these attributes.
    """
    try:
        from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen3_5  # lazy: optional (newer transformers)
    except ImportError:  # transformers without Qwen3.5: nothing to patch
        return 0
    patched = 0
    for module in hf_model.modules():
        if type(module).__name__.endswith("GatedDeltaNet") and not hasattr(module, "chunk_gated_delta_rule"):
            setattr(module, "causal_conv1d_fn", None)  # noqa: B010 (an attribute transformers 5.24 does not declare)
            setattr(module, "chunk_gated_delta_rule", qwen3_5.torch_chunk_gated_delta_rule)  # noqa: B010
            patched += 1
    return patched


def site_shapes(model: Any, backend: str, hook_names: list[str], n_tokens: int = 4) -> dict[str, tuple[int, ...]]:
    """Shapes of the given hooks after one forward pass (on the model's device, meta included)."""
    device = next(model.parameters()).device
    tokens = torch.zeros(1, n_tokens, dtype=torch.long, device=device)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=list(hook_names))
    missing = [n for n in hook_names if n not in cache]
    if missing:
        raise UnknownHookError(f"the {backend} model produced no activation for {missing}; these hook names are wrong.")
    return {n: tuple(cache[n].shape) for n in hook_names}


def verify_sites_on_meta(name_or_path: str | Path) -> list[dict[str, Any]]:
    """Build the model at its published shape on the meta device in every backend that runs it, run one
    forward, and check every (layer, site) hook exists with the width `site_d_in` promises.

    Returns one row per backend: backend, site_hooks (how many were checked), mismatches (hook names).
    """
    spec = resolve_model(name_or_path)
    rows = []
    for backend in model_backends(spec):
        pairs = [
            (hook_name(s, layer, backend, spec), s)
            for layer in range(spec.n_layers)
            for s in layer_sites(spec, layer, backend)
        ]
        shapes = site_shapes(meta_model(name_or_path, backend), backend, sorted({h for h, _ in pairs}))
        # a 4-d activation is per-head ([batch, pos, head, d_head]): its width is heads x d_head
        bad = [
            h for h, s in pairs if shapes[h][-1] * (shapes[h][-2] if len(shapes[h]) == 4 else 1) != site_d_in(spec, s)
        ]
        rows.append({"backend": backend, "site_hooks": len(pairs), "mismatches": bad})
    return rows

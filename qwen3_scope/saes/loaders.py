"""SAELens conversion functions for qwen3-scope releases and for Qwen-Scope files, without unpickling code.

Why our own: (1) our releases live in three places (inside the package, a local suite directory, the
hub) behind one SAELens release name; (2) SAELens drops registry `neuronpedia` ids and overrides for 6.x
configs (they land at the top level of the dict, not in `metadata`); (3) SAELens' Qwen-Scope loader calls
a bare `torch.load`, which executes arbitrary pickled code.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from importlib.resources import files
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import LLM_METADATA_KEYS, get_qwen_scope_config_from_hf
from sae_lens.util import str_to_dtype
from safetensors import safe_open

from qwen3_scope.core.errors import (
    ConfigError,
    CorruptFileError,
    MissingFileError,
    ModelMismatchError,
    Qwen3ScopeError,
    ReleaseError,
)
from qwen3_scope.model.family import resolve_model
from qwen3_scope.model.loading import register_with_transformer_lens
from qwen3_scope.model.sites import hook_name, model_backends, parse_hook_name, site_d_in
from qwen3_scope.naming import (
    BUNDLED_PREFIX,
    SAE_CFG_FILENAME,
    SAE_WEIGHTS_FILENAME,
    SPARSITY_FILENAME,
    training_command_for,
)

# Release-level `revision:` travels to the loaders as this config override (SAELens' lookup has no revision field).
REVISION_OVERRIDE = "qwen3_revision"

# names other modules import from here (SAELens' file names, spelled in qwen3_scope.naming)
__all__ = ["BUNDLED_PREFIX", "SAE_CFG_FILENAME", "SAE_WEIGHTS_FILENAME", "SPARSITY_FILENAME"]


class SAEWeightsUnavailableError(MissingFileError):
    pass


class CorruptSAEFileError(SAEWeightsUnavailableError, CorruptFileError):
    """An SAE file that exists but cannot be read (empty, truncated, not JSON / safetensors / a tensor checkpoint)."""


class UnsafeWeightsError(Qwen3ScopeError, ValueError):
    pass


class SAEModelMismatchError(ModelMismatchError):
    pass


def is_local_repo(repo_id: str) -> bool:
    """A release's repo_id names a local directory only when written as a path (absolute, ./, ../ or ~);
    `owner/name` is always a hub id, even if a folder of that name exists in the working directory."""
    text = str(repo_id)
    return os.path.isabs(os.path.expanduser(text)) or text.startswith(("./", "../", ".\\", "..\\", "~"))


def check_release_path(path: str, where: str) -> str:
    """A release entry's `path` must stay inside its repo or package: relative, no `..`, no drive or root."""
    inner = path.removeprefix(BUNDLED_PREFIX)
    for flavour in (PurePosixPath(inner), PureWindowsPath(inner)):
        if not inner or flavour.is_absolute() or flavour.drive or flavour.root or ".." in flavour.parts:
            raise ReleaseError(
                f"{where}: path {path!r} leaves its repository or package (absolute, or contains '..'); "
                "release paths must be relative folders inside the repo, like 'mlp_out/layer_3'."
            )
    return path


def bundled_root() -> Path:
    """Directory of the SAE suites shipped inside the package."""
    return Path(str(files("qwen3_scope"))) / "bundled_saes"


def apply_overrides(cfg_dict: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Merge registry overrides so that metadata keys reach `cfg.metadata` (the SAELens 6.x gap)."""
    cfg = dict(cfg_dict)
    if "metadata" not in cfg:  # a pre-6.0 flat config: SAELens' own defaulting handles the keys
        cfg.update(overrides or {})
        return cfg
    metadata = dict(cfg["metadata"])
    for key, value in (overrides or {}).items():
        if key in LLM_METADATA_KEYS or key.startswith("qwen3_"):
            metadata[key] = value
        else:
            cfg[key] = value
    cfg["metadata"] = metadata
    return cfg


def _missing_weights_message(repo_id: str, folder_name: str, reason: str) -> str:
    return (
        f"no weights for SAE {folder_name!r} of {repo_id!r} are reachable ({reason}). These SAEs are not "
        f"published yet, or you are offline without a cached copy. Produce them yourself:\n  "
        f"{training_command_for(folder_name)}\nthen register the suite with `qwen3-scope releases add SUITE_DIR` "
        "(or qwen3_scope.releases.register_suite) and load it under the release name it prints."
    )


def resolve_sae_folder(
    repo_id: str, folder_name: str, force_download: bool = False, revision: str | None = None
) -> Path:
    """Local directory holding cfg.json + sae_weights.safetensors, downloading from the hub if needed.

    Hub folders are downloaded only at a pinned `revision` (commit sha): a hub release without one is not
    published, and its ids raise SAEWeightsUnavailableError saying how to train them, without network access.
    """
    check_release_path(folder_name, f"SAE {folder_name!r} of {repo_id!r}")
    if folder_name.startswith(BUNDLED_PREFIX):
        folder = bundled_root() / folder_name.removeprefix(BUNDLED_PREFIX)
        if not (folder / SAE_WEIGHTS_FILENAME).is_file():
            raise SAEWeightsUnavailableError(
                f"the bundled SAE {folder_name!r} is missing from this installation ({folder}); reinstall "
                "qwen3-scope (pip install --force-reinstall qwen3-scope) or re-run the bundled-suite build."
            )
        return folder
    if is_local_repo(repo_id):
        folder = Path(repo_id).expanduser() / folder_name
        if not Path(repo_id).expanduser().is_dir():
            raise SAEWeightsUnavailableError(
                f"the suite directory {repo_id} of this release does not exist (moved or deleted?); register it "
                "again from its new place with `qwen3-scope releases add SUITE_DIR`."
            )
        if not (folder / SAE_CFG_FILENAME).is_file():
            raise SAEWeightsUnavailableError(
                f"{folder} has no {SAE_CFG_FILENAME}; the suite directory is incomplete. Re-run the training "
                "for this SAE (qwen3-scope train ... --resume) or remove it from the release."
            )
        return folder
    if revision is None:
        raise SAEWeightsUnavailableError(_missing_weights_message(repo_id, folder_name, "no pinned revision"))

    def download(name: str) -> str:
        return hf_hub_download(repo_id, f"{folder_name}/{name}", revision=revision, force_download=force_download)

    try:
        cfg_path = download(SAE_CFG_FILENAME)
        download(SAE_WEIGHTS_FILENAME)
    except (LocalEntryNotFoundError, EntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        raise SAEWeightsUnavailableError(_missing_weights_message(repo_id, folder_name, type(err).__name__)) from err
    try:
        download(SPARSITY_FILENAME)
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError):
        pass  # sparsity is optional
    return Path(cfg_path).parent


def _revision(cfg_overrides: dict[str, Any] | None) -> str | None:
    return (cfg_overrides or {}).get(REVISION_OVERRIDE)


def _read_safetensors(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device=device) as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors has its own error type for every header/data problem
        raise CorruptSAEFileError(
            f"{path} is not a readable safetensors file ({err}); it is corrupt or truncated. "
            "Delete it and re-download or re-train this SAE."
        ) from err


def qwen3_scope_loader(
    repo_id: str,
    folder_name: str,
    device: str = "cpu",
    force_download: bool = False,
    cfg_overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor | None]:
    """SAELens loader for qwen3-scope releases (bundled, local suite directory, or hub)."""
    folder = resolve_sae_folder(repo_id, folder_name, force_download, _revision(cfg_overrides))
    cfg_dict = qwen3_scope_config_getter(repo_id, folder_name, device, force_download, cfg_overrides)
    try:
        dtype = str_to_dtype(cfg_dict.get("dtype", "float32"))
    except ValueError as err:
        raise CorruptSAEFileError(
            f"{folder / SAE_CFG_FILENAME} has dtype {cfg_dict.get('dtype')!r}, which SAELens cannot read ({err}); "
            "expected e.g. 'float32'. Re-train or re-download the SAE."
        ) from err
    state_dict = {k: v.to(dtype) for k, v in _read_safetensors(folder / SAE_WEIGHTS_FILENAME, device).items()}
    d_out = cfg_dict.get("d_out", cfg_dict["d_in"])  # a transcoder's decoder writes its output width
    expected = {"W_enc": (cfg_dict["d_in"], cfg_dict["d_sae"]), "W_dec": (cfg_dict["d_sae"], d_out)}
    for key, shape in expected.items():
        if key not in state_dict or tuple(state_dict[key].shape) != shape:
            got = tuple(state_dict[key].shape) if key in state_dict else "missing"
            raise CorruptSAEFileError(
                f"{folder / SAE_WEIGHTS_FILENAME}: {key} is {got}, but {SAE_CFG_FILENAME} says {shape}; "
                "the weights do not belong to this config. Re-train or re-download the SAE."
            )
    sparsity_file = folder / SPARSITY_FILENAME
    log_sparsity = _read_safetensors(sparsity_file, device).get("sparsity") if sparsity_file.is_file() else None
    json.dumps(cfg_dict, default=str)  # fail here, not deep in SAELens, on an unserialisable override
    return cfg_dict, state_dict, log_sparsity


def qwen3_scope_config_getter(
    repo_id: str,
    folder_name: str,
    device: str = "cpu",
    force_download: bool = False,
    cfg_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Config of a qwen3-scope SAE, with registry overrides merged into metadata where they belong."""
    folder = resolve_sae_folder(repo_id, folder_name, force_download, _revision(cfg_overrides))
    cfg_dict = read_sae_cfg(folder / SAE_CFG_FILENAME)
    cfg_dict["device"] = device
    cfg_dict = apply_overrides(cfg_dict, {k: v for k, v in (cfg_overrides or {}).items() if k != REVISION_OVERRIDE})
    metadata = cfg_dict.get("metadata", {})
    model_name = metadata.get("model_name")
    if model_name:  # short names (the organism) become a directory TransformerLens and SAELens can load
        try:
            spec = resolve_model(model_name)
        except ValueError:
            pass  # a model this machine does not have; SAELens will say so when it is loaded
        else:
            metadata.setdefault("qwen3_model", spec.name)
            metadata["model_name"] = spec.source
            register_with_transformer_lens(spec.source)  # so SAELens' own evals can load a local model
    return cfg_dict


def read_sae_cfg(path: str | Path) -> dict[str, Any]:
    """An SAE's cfg.json (SAELens' config: at least d_in and d_sae); a missing, empty, truncated or foreign file
    raises an error naming it."""
    path = Path(path)
    try:
        cfg_dict = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SAEWeightsUnavailableError(
            f"{path} is missing or not JSON ({err}); expected SAELens' {SAE_CFG_FILENAME} beside "
            f"{SAE_WEIGHTS_FILENAME}. Re-train the SAE (qwen3-scope train ... --resume) or re-download it."
        ) from err
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as err:
        raise CorruptSAEFileError(
            f"{path} is missing or not JSON ({err}); it is corrupt or truncated, expected SAELens' "
            f"{SAE_CFG_FILENAME}. Delete the SAE folder and re-train (qwen3-scope train ... --resume) or re-download it."
        ) from err
    if not isinstance(cfg_dict, dict) or "d_in" not in cfg_dict or "d_sae" not in cfg_dict:
        raise CorruptSAEFileError(f"{path} is not a SAELens SAE config (no d_in/d_sae); re-train or re-download it.")
    return cfg_dict


# ---- Qwen-Scope (`layer{n}.sae.pt`) files, loaded without executing pickled code ----------------------


# what the unpickler says about bytes that are not a pickle at all (anything else it refuses may be code)
_GARBLED_PICKLE = ("invalid load key", "pickle data was truncated")


def load_pt_weights_safely(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """`torch.load(weights_only=True)`: tensors and plain containers only; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise SAEWeightsUnavailableError(
            f"{path} does not exist; pass the path of a Qwen-Scope layer{{n}}.sae.pt file."
        )
    if path.stat().st_size == 0:
        raise CorruptSAEFileError(f"{path} is empty; expected a Qwen-Scope layer{{n}}.sae.pt tensor checkpoint.")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if any(text in str(err) for text in _GARBLED_PICKLE):
            raise CorruptSAEFileError(
                f"{path} is not a readable torch checkpoint ({str(err).strip().splitlines()[-1]}); it is corrupt or "
                "truncated, expected a Qwen-Scope layer{n}.sae.pt file. Download it again."
            ) from err
        raise UnsafeWeightsError(
            f"refusing to load {path}: it is not a plain tensor checkpoint and unpickling it could run "
            f"arbitrary code ({str(err).splitlines()[0]}). Ask its publisher for safetensors, or convert a "
            "checkpoint you trust yourself with safetensors.torch.save_file."
        ) from err
    except (RuntimeError, EOFError, AttributeError, TypeError, ValueError, OSError) as err:
        raise CorruptSAEFileError(
            f"{path} is not a readable torch checkpoint ({str(err).splitlines()[0] if str(err) else type(err).__name__}"
            "); it is corrupt or truncated, expected a Qwen-Scope layer{n}.sae.pt file. Download it again."
        ) from err
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CorruptSAEFileError(f"{path} does not hold a flat dict of tensors; it is not a Qwen-Scope SAE file.")
    return data


def qwen_scope_state_dict(raw: dict[str, torch.Tensor], path: str | Path) -> dict[str, torch.Tensor]:
    """Qwen-Scope stores W_enc (d_sae, d_in) and W_dec (d_in, d_sae); SAELens wants the transposes."""
    missing = {"W_enc", "W_dec", "b_enc", "b_dec"} - set(raw)
    if missing:
        raise CorruptSAEFileError(f"{path} lacks {sorted(missing)}; it is not a Qwen-Scope SAE file.")
    return {
        "W_enc": raw["W_enc"].T.contiguous(),
        "W_dec": raw["W_dec"].T.contiguous(),
        "b_enc": raw["b_enc"],
        "b_dec": raw["b_dec"],
    }


def qwen_scope_hook_name(model_name: str, saelens_hook: str) -> str:
    """The hook a Qwen-Scope SAE reads, for the backends its model runs in.

    SAELens names every Qwen-Scope SAE `blocks.L.hook_resid_post` (a HookedTransformer name). The Qwen3 MoE
    and Qwen3.5 models run only in TransformerBridge or HookedProxyLM, and SAETransformerBridge caches real
    hook names only, so for them the same activation (the output of `model.layers[L]`) is named
    `blocks.L.hook_out`. Dense Qwen3 keeps SAELens' name.
    """
    try:
        spec = resolve_model(model_name)
    except ValueError:
        return saelens_hook  # a model outside our registry: leave SAELens' choice alone
    if "hooked" in model_backends(spec):
        return saelens_hook
    layer, site = parse_hook_name(saelens_hook, "hooked")
    return hook_name(site, layer, "bridge", spec)


def qwen_scope_safe_loader(
    repo_id: str,
    folder_name: str,
    device: str = "cpu",
    force_download: bool = False,
    cfg_overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor | None]:
    """Drop-in replacement for SAELens' `qwen_scope` loader that never unpickles code."""
    cfg_dict = get_qwen_scope_config_from_hf(repo_id, folder_name, device, force_download, cfg_overrides)
    cfg_dict["prepend_bos"] = False  # Qwen3 has no BOS token
    cfg_dict["hook_name"] = qwen_scope_hook_name(cfg_dict["model_name"], cfg_dict["hook_name"])
    path = hf_hub_download(repo_id=repo_id, filename=folder_name, force_download=force_download)
    return cfg_dict, qwen_scope_state_dict(load_pt_weights_safely(path, device), path), None


def load_qwen_scope_file(
    path: str | Path,
    model: str = "Qwen/Qwen3-1.7B",
    k: int = 50,
    layer: int | None = None,
    backend: str | None = None,
    device: str = "cpu",
):
    """A Qwen-Scope `layer{n}.sae.pt` as a SAELens TopKSAE on any Qwen3 model (e.g. the instruct one).

    Qwen-Scope SAEs read the output of `model.layers[n]`, our `resid_post` site; the hook name comes
    from the adapters for `backend` (default: `hooked` for dense Qwen3, `bridge` for the MoE and Qwen3.5
    models, which HookedTransformer cannot run), and the width must match the model's d_model.
    """
    path = Path(path)
    if not path.is_file():
        raise SAEWeightsUnavailableError(
            f"{path} does not exist; pass the path of a Qwen-Scope layer{{n}}.sae.pt file."
        )
    if layer is None:
        match = re.search(r"layer(\d+)\.sae\.pt$", path.name)
        if match is None:
            raise ConfigError(f"cannot read the layer from {path.name!r}; pass layer=N explicitly.")
        layer = int(match.group(1))
    spec = resolve_model(model)
    if backend is None:  # dense Qwen3: HookedTransformer; MoE and Qwen3.5 models: TransformerBridge
        backend = model_backends(spec)[0]
    state_dict = qwen_scope_state_dict(load_pt_weights_safely(path, device), path)
    d_in, d_sae = state_dict["W_enc"].shape
    if d_in != site_d_in(spec, "resid_post"):
        raise SAEModelMismatchError(
            f"{path} has d_in {d_in}, but {spec.name}'s residual stream is {site_d_in(spec, 'resid_post')} wide; "
            "use the SAE with the model it was trained for."
        )
    cfg = {
        "architecture": "topk",
        "d_in": d_in,
        "d_sae": d_sae,
        "k": k,
        "dtype": "float32",
        "device": device,
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "metadata": {
            "model_name": spec.source,
            "hook_name": hook_name("resid_post", layer, backend, spec),
            "hf_hook_name": hook_name("resid_post", layer, "hf", spec),
            "prepend_bos": False,
            "qwen3_model": spec.name,
            "qwen3_site": "resid_post",
            "qwen3_layer": layer,
        },
    }
    sae = SAE.from_dict(cfg)
    sae.load_state_dict(state_dict)
    return sae.to(device)

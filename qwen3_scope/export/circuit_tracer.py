"""Transcoder sets <-> circuit-tracer 0.5.0, and circuit-tracer itself in a venv of its own.

circuit-tracer's per-layer transcoder set (read in its `utils/hf_utils.py` and `transcoder/single_layer_transcoder.py`):
a folder with `config.yaml` (`model_kind: transcoder_set`, `feature_input_hook`, `feature_output_hook`, optional
`transcoders:` list) and `layer_{i}.safetensors` for every layer 0..n-1, each with `W_enc` and `W_dec` both shaped
(d_transcoder, d_model), `b_enc` (d_transcoder), `b_dec` (d_model), and optionally `activation_function.threshold`
(JumpReLU; without it the activation is ReLU: its loader knows no TopK) and `W_skip` (d_model, d_model). Every layer
has the same width. We write no `transcoders:` list, so that circuit-tracer finds the layer files of a Hub repo
itself; our runner gives it the local paths.

Hooks. Our transcoders on the hooked backend read `blocks.L.ln2.hook_normalized` (x / rms, before the RMSNorm
weight w) and write `blocks.L.hook_mlp_out`; circuit-tracer reads `mlp.hook_in`, the post-attention RMSNorm output
(x / rms * w). So the export divides W_enc's input rows (and W_skip's input columns) by w, and the import multiplies:
pre-activations, activations and outputs are then the same numbers. w comes from the model's own weights. Transcoders
of the bridge or hf backend already read the weighted MLP input and convert as they are.

circuit-tracer pins transformers<=4.57.3 (we need >=5.9), so it runs in a venv of its own, built once under
`~/.cache/qwen3-scope/venvs/` (or `$QWEN3_SCOPE_CACHE/venvs/`) and keyed by its pins; `circuit_tracer_runner.py`
(standalone, next to this file) is what that venv's Python runs. transformers 4.57 reads a config.json written by
transformers 5 (`rope_parameters`) with the default rope_theta 10,000 and no warning, so a local model is written
again for it (`model_folder_for_transformers4`) with a top-level `rope_theta`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub import snapshot_download
from sae_lens import JumpReLUTranscoder, SkipTranscoder, Transcoder
from sae_lens.saes.transcoder import (
    JumpReLUSkipTranscoderConfig,
    JumpReLUTranscoderConfig,
    SkipTranscoderConfig,
    TranscoderConfig,
)
from safetensors import safe_open

from qwen3_scope.core import venvs
from qwen3_scope.core.errors import ConfigError, CorruptFileError, MissingFileError, ModelMismatchError, Qwen3ScopeError
from qwen3_scope.core.io import atomic_dir, atomic_save_safetensors, atomic_write_json, atomic_write_text
from qwen3_scope.evaluation.suite_eval import SuiteEntry, entries_from_directory, entries_from_release
from qwen3_scope.export.config import CircuitTracerExportConfig
from qwen3_scope.model.family import Qwen3ModelSpec, resolve_model
from qwen3_scope.model.sites import UnknownHookError, parse_transcoder_hooks, transcoder_hooks
from qwen3_scope.naming import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, TRANSCODER, sae_id

# circuit-tracer and what it needs beside our environment: nnsight 0.8 moved `nnsight.intervention.tracing`, which
# circuit-tracer 0.5.0 imports, so nnsight is pinned to the last release it works with.
CIRCUIT_TRACER_PINS = ("circuit-tracer==0.5.0", "nnsight==0.7.0")
RUNNER = Path(__file__).with_name("circuit_tracer_runner.py")
CONFIG_YAML = "config.yaml"
MODEL_FOLDER = "model"  # the model written for transformers 4.x, beside the set
INPUT_HOOK = "mlp.hook_in"  # circuit-tracer's names (its nnsight mapping of Qwen3ForCausalLM)
OUTPUT_HOOK = "mlp.hook_out"
VENV_NAME = "circuit-tracer"
ZERO_WEIGHT = 1e-8  # an RMSNorm weight this small cannot be divided out


class CircuitTracerEnvError(Qwen3ScopeError):
    """circuit-tracer's venv cannot be built or its runner failed (the message holds pip's or the runner's output)."""


class TranscoderSetError(ConfigError):
    """A transcoder set circuit-tracer cannot take (missing layer, mixed widths, TopK, another model, ...)."""


def layer_file(layer: int) -> str:
    return f"layer_{layer}.safetensors"


# ---- the model's RMSNorm weights, and a model folder transformers 4.x reads correctly ------------------------------


def _weight_files(spec: Qwen3ModelSpec) -> list[Path]:
    if spec.is_local:
        files = sorted(Path(spec.source).glob("*.safetensors"))
    else:
        files = sorted(Path(snapshot_download(spec.source, allow_patterns=["*.safetensors"])).glob("*.safetensors"))
    if not files:
        raise MissingFileError(f"{spec.source} has no *.safetensors weight files; the RMSNorm weights are needed.")
    return files


def ln2_weights(spec: Qwen3ModelSpec) -> dict[int, torch.Tensor]:
    """{layer: the post-attention RMSNorm weight} read from the model's weight files (float32)."""
    pattern = re.compile(r"^model\.layers\.(\d+)\.post_attention_layernorm\.weight$")
    found: dict[int, torch.Tensor] = {}
    for file in _weight_files(spec):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                match = pattern.match(key)
                if match:
                    found[int(match[1])] = handle.get_tensor(key).float()
    missing = sorted(set(range(spec.n_layers)) - set(found))
    if missing:
        raise CorruptFileError(f"{spec.source}: no post_attention_layernorm weight for layers {missing}.")
    return found


def model_folder_for_transformers4(source: str | Path, out: str | Path) -> Path:
    """A copy of a local checkpoint whose config.json transformers 4.x reads as the same model: `rope_theta` (and
    `torch_dtype`) at the top level beside transformers 5's `rope_parameters`."""
    source, out = Path(source), Path(out)
    config = json.loads((source / "config.json").read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" not in config:
        if "rope_theta" not in rope:
            raise CorruptFileError(f"{source / 'config.json'} has neither rope_theta nor rope_parameters.rope_theta.")
        config["rope_theta"] = rope["rope_theta"]
    if "rope_scaling" not in config and rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = rope
    config.setdefault("torch_dtype", config.get("dtype", "float32"))
    with atomic_dir(out) as tmp:
        for file in source.iterdir():
            if file.is_file() and file.name != "config.json":
                shutil.copy2(file, tmp / file.name)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


# ---- SAELens transcoders -> circuit-tracer's layout ------------------------------------------------------------------


@dataclass
class ExportedSet:
    out: Path
    model_name: str
    n_layers: int
    d_transcoder: int
    activation: str
    skip: bool
    scan: str
    model_folder: Path | None  # the model for transformers 4.x (local models only)
    ids: list[str] = field(default_factory=list)


def transcoder_entries(suite: Path | None, release: str | None, ids: str) -> list[SuiteEntry]:
    """The SAELens transcoders of a suite directory or of a release whose id fully matches `ids` (SAEs are skipped)."""
    if suite is not None:
        entries = entries_from_directory(suite, ids)
    else:
        assert release is not None  # the configs check there is exactly one source
        entries = entries_from_release(release, ids)
    found = [e for e in entries if isinstance(e.sae, Transcoder)]
    if not found:
        raise TranscoderSetError(
            f"{suite or release} holds no SAELens transcoder with an id matching {ids!r} (only SAEs)."
        )
    return found


def _layer_of(entry: SuiteEntry) -> tuple[int, bool]:
    """(layer, whether the input is before the RMSNorm weight) from the transcoder's hook pair."""
    meta = entry.sae.cfg.metadata
    hook_in, hook_out = str(meta.hook_name), str(meta.hook_name_out)
    try:
        layer = parse_transcoder_hooks(hook_in, hook_out)
    except UnknownHookError as err:
        raise TranscoderSetError(
            f"transcoder {entry.sae_id} reads {hook_in} and writes {hook_out}: not one layer's MLP input -> MLP output, "
            f"which is what circuit-tracer's per-layer sets replace ({err})"
        ) from err
    return layer, hook_in == transcoder_hooks(layer, "hooked")[0]


def _activation(entry: SuiteEntry) -> str:
    sae = entry.sae
    if isinstance(sae, JumpReLUTranscoder):
        return "jump_relu"
    if type(sae) in (Transcoder, SkipTranscoder) and sae.cfg.architecture() in ("transcoder", "skip_transcoder"):
        return "relu"
    raise TranscoderSetError(
        f"transcoder {entry.sae_id} is a {sae.cfg.architecture()} transcoder; circuit-tracer 0.5.0's per-layer sets "
        "load ReLU and JumpReLU transcoders only (its loader has no TopK). Export a ReLU or JumpReLU set."
    )


def circuit_tracer_tensors(sae: Any, weight: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """One SAELens transcoder's tensors in circuit-tracer's names and shapes; `weight` (the layer's ln2 weight) when the
    transcoder reads the input before the RMSNorm weight (divided out of W_enc's rows and W_skip's columns)."""
    if str(getattr(sae.cfg, "normalize_activations", "none")) != "none":
        raise TranscoderSetError(
            f"a transcoder with normalize_activations={sae.cfg.normalize_activations!r} cannot be exported: "
            "circuit-tracer applies no input normalisation."
        )
    w_enc = sae.W_enc.detach().float()  # (d_in, d_sae)
    w_skip = sae.W_skip.detach().float() if isinstance(sae, SkipTranscoder) else None  # (d_out, d_in)
    if weight is not None:
        w_enc = w_enc / weight[:, None]
        w_skip = w_skip / weight[None, :] if w_skip is not None else None
    tensors = {
        "W_enc": w_enc.T.contiguous(),
        "W_dec": sae.W_dec.detach().float().contiguous(),
        "b_enc": sae.b_enc.detach().float().contiguous(),
        "b_dec": sae.b_dec.detach().float().contiguous(),
    }
    if isinstance(sae, JumpReLUTranscoder):
        tensors["activation_function.threshold"] = sae.threshold.detach().float().contiguous()
    if w_skip is not None:
        tensors["W_skip"] = w_skip.contiguous()
    return tensors


def _check_weight(weight: torch.Tensor, layer: int, spec: Qwen3ModelSpec) -> None:
    small = (weight.abs() < ZERO_WEIGHT).nonzero().flatten().tolist()
    if small:
        raise TranscoderSetError(
            f"{spec.name} layer {layer}: the post-attention RMSNorm weight is ~0 at dimensions {small[:8]}; a "
            "transcoder reading the input before that weight cannot be rewritten for circuit-tracer's weighted input."
        )


def export_transcoder_set(
    entries: list[SuiteEntry], out: str | Path, model: str | None = None, scan: str | None = None
) -> ExportedSet:
    """Write `entries` (one SAELens transcoder per layer) as circuit-tracer's transcoder set in `out` (replaced
    atomically), plus `out/model/` for a local model (the checkpoint as transformers 4.x reads it)."""
    if not entries:
        raise TranscoderSetError("no transcoder to export (the source holds SAEs but no SAELens transcoder).")
    by_layer: dict[int, tuple[SuiteEntry, bool]] = {}
    for entry in entries:
        layer, before_weight = _layer_of(entry)
        if layer in by_layer:
            raise TranscoderSetError(
                f"two transcoders for layer {layer} ({by_layer[layer][0].sae_id}, {entry.sae_id}); circuit-tracer "
                "takes one per layer: narrow --ids."
            )
        by_layer[layer] = (entry, before_weight)
    names = sorted({str(e.sae.cfg.metadata.model_name) for e in entries})
    if model is None and len(names) != 1:
        raise ModelMismatchError(
            f"the transcoders name {len(names)} models ({', '.join(names)}); export one model's set."
        )
    spec = resolve_model(model or names[0])
    missing = sorted(set(range(spec.n_layers)) - set(by_layer))
    if missing:
        raise TranscoderSetError(
            f"{spec.name} has {spec.n_layers} layers but there is no transcoder for layer(s) {missing}; circuit-tracer "
            "needs one for every layer 0..n-1."
        )
    extra = sorted(set(by_layer) - set(range(spec.n_layers)))
    if extra:
        raise ModelMismatchError(f"transcoders for layer(s) {extra}, which {spec.name} ({spec.n_layers} layers) lacks.")
    widths = {layer: e.sae.cfg.d_sae for layer, (e, _) in by_layer.items()}
    if len(set(widths.values())) != 1:
        raise TranscoderSetError(f"circuit-tracer needs one width for every layer; the widths are {widths}.")
    activations = {_activation(e) for e, _ in by_layer.values()}
    skips = {isinstance(e.sae, SkipTranscoder) for e, _ in by_layer.values()}
    if len(activations) != 1 or len(skips) != 1:
        raise TranscoderSetError("circuit-tracer needs one kind of transcoder (activation, skip) for every layer.")
    for layer, (entry, _) in by_layer.items():
        if entry.sae.cfg.d_in != spec.d_model or entry.sae.cfg.d_out != spec.d_model:
            raise ModelMismatchError(
                f"transcoder {entry.sae_id} maps {entry.sae.cfg.d_in} -> {entry.sae.cfg.d_out}, but {spec.name}'s "
                f"layer {layer} MLP is {spec.d_model} -> {spec.d_model}."
            )
    weights = ln2_weights(spec) if any(before for _, before in by_layer.values()) else {}
    scan = scan or f"{spec.key}-transcoders"
    out = Path(out)
    with atomic_dir(out) as tmp:
        for layer in range(spec.n_layers):
            entry, before_weight = by_layer[layer]
            weight = weights[layer] if before_weight else None
            if weight is not None:
                _check_weight(weight, layer, spec)
            atomic_save_safetensors(tmp / layer_file(layer), circuit_tracer_tensors(entry.sae, weight))
        config = {
            "model_kind": "transcoder_set",
            "model_name": spec.name if not spec.is_local else spec.key,
            "feature_input_hook": INPUT_HOOK,
            "feature_output_hook": OUTPUT_HOOK,
            "activation": activations.pop(),
            "scan": scan,
        }
        atomic_write_text(tmp / CONFIG_YAML, yaml.safe_dump(config, sort_keys=False))
        model_folder = None
        if spec.is_local:
            model_folder_for_transformers4(spec.source, tmp / MODEL_FOLDER)
            model_folder = out / MODEL_FOLDER
    first = by_layer[0][0].sae
    return ExportedSet(
        out=out,
        model_name=str(config["model_name"]),
        n_layers=spec.n_layers,
        d_transcoder=int(first.cfg.d_sae),
        activation=str(config["activation"]),
        skip=skips.pop(),
        scan=scan,
        model_folder=model_folder,
        ids=[by_layer[layer][0].sae_id for layer in range(spec.n_layers)],
    )


# ---- circuit-tracer's layout -> SAELens transcoder folders -----------------------------------------------------------


def read_set_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_YAML
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: {folder} is not a circuit-tracer transcoder set.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CorruptFileError(f"{path} is not valid YAML ({err}).") from err
    if not isinstance(config, dict) or config.get("model_kind") != "transcoder_set":
        raise CorruptFileError(
            f"{path} is not a per-layer transcoder set (expected `model_kind: transcoder_set`, got "
            f"{config.get('model_kind') if isinstance(config, dict) else config!r})."
        )
    for key in ("feature_input_hook", "feature_output_hook"):
        if key not in config:
            raise CorruptFileError(f"{path} lacks `{key}`.")
    return config


def _read_layer(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: the set has no transcoder for this layer.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key).float() for key in handle.keys()}
    except Exception as err:  # safetensors raises its own error type for every header problem
        raise CorruptFileError(f"{path} is not a readable safetensors file ({err}).") from err
    missing = [k for k in ("W_enc", "W_dec", "b_enc", "b_dec") if k not in tensors]
    if missing:
        raise CorruptFileError(f"{path} lacks {', '.join(missing)} (circuit-tracer's layer file keys).")
    return tensors


def import_transcoder_set(folder: str | Path, out: str | Path, model: str | None = None) -> dict[str, Path]:
    """A circuit-tracer transcoder set -> one SAELens transcoder folder per layer, `out/transcoder/layer_L/` (cfg.json
    + sae_weights.safetensors, loadable with `SAE.load_from_disk`), reading `blocks.L.ln2.hook_normalized` and writing
    `blocks.L.hook_mlp_out` (the ln2 weight multiplied into W_enc's rows). Returns {id: folder}."""
    folder, out = Path(folder), Path(out)
    config = read_set_config(folder)
    if (config["feature_input_hook"], config["feature_output_hook"]) != (INPUT_HOOK, OUTPUT_HOOK):
        raise TranscoderSetError(
            f"{folder / CONFIG_YAML}: a set reading {config['feature_input_hook']} and writing "
            f"{config['feature_output_hook']}; qwen3-scope imports MLP transcoders ({INPUT_HOOK} -> {OUTPUT_HOOK})."
        )
    name = model or config.get("model_name")
    if not name:
        raise ConfigError(f"{folder / CONFIG_YAML} names no model_name; pass the model (--model).")
    spec = resolve_model(str(name))
    if "transcoders" in config:
        paths = [folder / Path(str(p)).name for p in config["transcoders"]]
    else:
        paths = [folder / layer_file(layer) for layer in range(spec.n_layers)]
    if len(paths) != spec.n_layers:
        raise ModelMismatchError(f"{folder} holds {len(paths)} layers; {spec.name} has {spec.n_layers}.")
    extra = sorted(int(m[1]) for f in folder.iterdir() if (m := re.fullmatch(r"layer_(\d+)\.safetensors", f.name)))
    first = _read_layer(paths[0])
    if first["W_enc"].shape[-1] != spec.d_model or (extra and extra[-1] >= spec.n_layers):
        raise ModelMismatchError(
            f"{folder} is a set for another model than {spec.name} (d_model {spec.d_model}, {spec.n_layers} layers): "
            f"{paths[0].name} reads width {first['W_enc'].shape[-1]}, and the layer files go up to layer_"
            f"{extra[-1] if extra else '?'}. Pass the set's own model (--model; config.yaml names "
            f"{config.get('model_name')!r})."
        )
    weights = ln2_weights(spec)
    layers = [first, *(_read_layer(path) for path in paths[1:])]
    d_sae = layers[0]["b_enc"].shape[0]
    written: dict[str, Path] = {}
    for layer, (path, tensors) in enumerate(zip(paths, layers)):
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        expected = {"W_enc": (d_sae, spec.d_model), "W_dec": (d_sae, spec.d_model), "b_dec": (spec.d_model,)}
        if "W_skip" in tensors:
            expected["W_skip"] = (spec.d_model, spec.d_model)
        if "activation_function.threshold" in tensors:
            expected["activation_function.threshold"] = (d_sae,)
        wrong = {k: shapes[k] for k, v in expected.items() if shapes[k] != v}
        if wrong or shapes["b_enc"] != (d_sae,):
            raise ModelMismatchError(
                f"{path}: shapes {wrong or shapes} do not fit {spec.name} (d_model {spec.d_model}) and the set's "
                f"width {d_sae} (expected {expected})."
            )
        weight = weights[layer]
        hook_in, hook_out = transcoder_hooks(layer, "hooked", spec)
        jump = "activation_function.threshold" in tensors
        skip = "W_skip" in tensors
        config_cls = {
            (False, False): TranscoderConfig,
            (False, True): SkipTranscoderConfig,
            (True, False): JumpReLUTranscoderConfig,
            (True, True): JumpReLUSkipTranscoderConfig,
        }[(jump, skip)]
        sae_cfg = config_cls(
            d_in=spec.d_model, d_sae=int(d_sae), d_out=spec.d_model, dtype="float32", apply_b_dec_to_input=False
        )
        metadata = {
            "model_name": spec.name if not spec.is_local else spec.key,
            "hook_name": hook_in,
            "hook_name_out": hook_out,
            "prepend_bos": False,
            "imported_from": f"circuit-tracer transcoder set {config.get('scan') or folder.name}",
        }
        for key, value in metadata.items():
            setattr(sae_cfg.metadata, key, value)
        state = {
            "W_enc": (tensors["W_enc"].T * weight[:, None]).contiguous(),
            "W_dec": tensors["W_dec"].contiguous(),
            "b_enc": tensors["b_enc"].contiguous(),
            "b_dec": tensors["b_dec"].contiguous(),
        }
        if jump:
            state["threshold"] = tensors["activation_function.threshold"].contiguous()
        if skip:
            state["W_skip"] = (tensors["W_skip"] * weight[None, :]).contiguous()
        tc_id = sae_id(TRANSCODER, layer)
        target = out / tc_id
        with atomic_dir(target) as tmp:
            atomic_write_json(tmp / SAE_CFG_FILENAME, sae_cfg.to_dict())
            atomic_save_safetensors(tmp / SAE_WEIGHTS_FILENAME, state)
        written[tc_id] = target
    return written


def run_circuit_tracer_export(cfg: CircuitTracerExportConfig) -> ExportedSet | dict[str, Path]:
    """The `qwen3-scope export circuit-tracer` job."""
    if cfg.out.exists() and any(cfg.out.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"{cfg.out} is not empty; choose another --out or pass --overwrite.")
    if cfg.import_set is not None:
        return import_transcoder_set(cfg.import_set, cfg.out, cfg.model)
    return export_transcoder_set(transcoder_entries(cfg.suite, cfg.release, cfg.ids), cfg.out, cfg.model, cfg.scan)


# ---- circuit-tracer's venv and its runner ----------------------------------------------------------------------------


def venv_dir() -> Path:
    """circuit-tracer's venv folder (`core.venvs`: keyed by the pins and the Python version)."""
    return venvs.venv_dir(VENV_NAME, CIRCUIT_TRACER_PINS)


def ready_circuit_tracer_python() -> Path | None:
    """The Python of circuit-tracer's venv when it is built (never builds it), else None."""
    return venvs.ready_python(VENV_NAME, CIRCUIT_TRACER_PINS)


def circuit_tracer_python(progress: Callable[[str], None] | None = print) -> Path:
    """The Python of circuit-tracer's venv, built on first use (`core.venvs.pinned_venv`: `--system-site-packages`,
    then pip installs only the pins; torch and the rest come from this environment; ~2 min once). Never a silent
    fallback: a failed build raises `VenvBuildError` with pip's output."""
    return venvs.pinned_venv(
        VENV_NAME,
        CIRCUIT_TRACER_PINS,
        probe="import circuit_tracer, nnsight, transformers",
        fix="circuit-tracer needs its own environment (it pins transformers<=4.57.3). Check that pip can reach the "
        "package index, then run `qwen3-scope trace --setup` again.",
        progress=progress,
    )


def run_runner(python: Path, request: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run the standalone runner in circuit-tracer's venv on `request`; its `result.json`."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "request.json"
    path.write_text(json.dumps({**request, "out": str(workdir)}))
    runner = shutil.copy(RUNNER, workdir / RUNNER.name)  # run from there: our circuit_tracer.py would shadow theirs
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    env.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    done = subprocess.run([str(python), str(runner), str(path)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-40:])
        raise CircuitTracerEnvError(f"circuit-tracer (in {python.parent.parent}) failed:\n{tail}")
    return json.loads((workdir / "result.json").read_text())

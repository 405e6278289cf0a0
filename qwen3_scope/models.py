"""The Qwen3 dense family: published shapes, name resolution and local checkpoints.

Why a registry of our own: every later stage (hook names, SAE widths, memory plans, recipes) needs a
model's shape *before* any weights exist, and most users here have no network to read a hub config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

QWEN3_HEAD_DIM = 128
QWEN3_VOCAB = 151_936
QWEN3_ROPE_THETA = 1_000_000.0
QWEN3_MAX_POSITIONS = 40_960
QWEN3_ARCHITECTURE = "Qwen3ForCausalLM"


class ModelNotFoundError(ValueError):
    """Raised for a name that is neither a Qwen3 family member, a short name, nor a Qwen3 checkpoint."""


@dataclass(frozen=True)
class Qwen3ModelSpec:
    """Shape of one Qwen3 model; `source` is a hub id or a local directory to load weights from."""

    name: str
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    head_dim: int = QWEN3_HEAD_DIM
    vocab_size: int = QWEN3_VOCAB
    tie_embeddings: bool = True
    rope_theta: float = QWEN3_ROPE_THETA
    max_position_embeddings: int = QWEN3_MAX_POSITIONS
    rms_norm_eps: float = 1e-6
    instruct: bool = True
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def d_attn(self) -> int:
        """Width of the concatenated attention heads (the input of o_proj)."""
        return self.n_heads * self.head_dim

    @property
    def key(self) -> str:
        """Short id used in SAE ids: `qwen3-4b`, `organism`, or a local checkpoint's directory name."""
        if self.name.lower().startswith("qwen/"):
            return self.name.lower().removeprefix("qwen/")
        return Path(self.name).name.lower()

    @property
    def is_local(self) -> bool:
        return bool(self.source) and Path(self.source).is_dir()

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < self.n_layers:
            raise IndexError(
                f"layer {layer!r} is out of range for {self.name}: it has {self.n_layers} layers, "
                f"so use 0..{self.n_layers - 1}."
            )
        return layer

    def to_hf_config(self, n_layers: int | None = None, **overrides: Any):
        """A `transformers.Qwen3Config` of this shape (optionally fewer layers, for random test models)."""
        from transformers import Qwen3Config

        kwargs: dict[str, Any] = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.d_mlp,
            num_hidden_layers=n_layers or self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            tie_word_embeddings=self.tie_embeddings,
            rope_theta=self.rope_theta,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            architectures=[QWEN3_ARCHITECTURE],
        )
        kwargs.update(overrides)
        return Qwen3Config(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        return out


# Published config.json values of the dense Qwen3 release (head_dim 128, vocab 151936, rope_theta 1e6).
_FAMILY_SHAPES: dict[str, tuple[int, int, int, int, int, bool]] = {
    #        layers d_model d_mlp heads kv  tied
    "0.6B": (28, 1024, 3072, 16, 8, True),
    "1.7B": (28, 2048, 6144, 16, 8, True),
    "4B": (36, 2560, 9728, 32, 8, True),
    "8B": (36, 4096, 12288, 32, 8, False),
    "14B": (40, 5120, 17408, 40, 8, False),
    "32B": (64, 5120, 25600, 64, 8, False),
}


def _family() -> dict[str, Qwen3ModelSpec]:
    specs = {}
    for size, (layers, d_model, d_mlp, heads, kv, tied) in _FAMILY_SHAPES.items():
        for instruct in (True, False) if size != "32B" else (True,):  # Qwen published no Qwen3-32B-Base
            name = f"Qwen/Qwen3-{size}" + ("" if instruct else "-Base")
            specs[name] = Qwen3ModelSpec(
                name=name, n_layers=layers, d_model=d_model, d_mlp=d_mlp, n_heads=heads,
                n_kv_heads=kv, tie_embeddings=tied, instruct=instruct, source=name,
            )
    return specs


QWEN3_FAMILY: dict[str, Qwen3ModelSpec] = _family()


def list_models(instruct: bool | None = None) -> list[str]:
    """Official names of the family; `instruct=True/False` filters instruct or base models."""
    return [n for n, s in QWEN3_FAMILY.items() if instruct is None or s.instruct == instruct]


def spec_from_hf_config(config: dict[str, Any], name: str, source: str) -> Qwen3ModelSpec:
    """Build a spec from a config.json dict, refusing anything that is not a Qwen3 causal LM."""
    architectures = config.get("architectures") or []
    if config.get("model_type") != "qwen3" and QWEN3_ARCHITECTURE not in architectures:
        raise ModelNotFoundError(
            f"{source} is not a Qwen3 checkpoint (model_type={config.get('model_type')!r}, "
            f"architectures={architectures}). qwen3-scope supports Qwen3ForCausalLM models only; "
            "point it at a directory saved by Qwen3ForCausalLM.save_pretrained."
        )
    n_heads = config["num_attention_heads"]
    return Qwen3ModelSpec(
        name=name,
        n_layers=config["num_hidden_layers"],
        d_model=config["hidden_size"],
        d_mlp=config["intermediate_size"],
        n_heads=n_heads,
        n_kv_heads=config.get("num_key_value_heads", n_heads),
        head_dim=config.get("head_dim") or config["hidden_size"] // n_heads,
        vocab_size=config["vocab_size"],
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", QWEN3_ROPE_THETA)),
        max_position_embeddings=config.get("max_position_embeddings", QWEN3_MAX_POSITIONS),
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        instruct=not name.endswith("-Base"),
        source=source,
    )


def _read_local(path: Path) -> Qwen3ModelSpec:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(
            f"{path} is a directory but has no config.json, so it is not a Hugging Face checkpoint. "
            "Save the model with Qwen3ForCausalLM.save_pretrained(dir) (and its tokenizer) first."
        )
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ModelNotFoundError(f"{config_file} is not valid JSON ({err}); re-save the checkpoint.") from err
    return spec_from_hf_config(config, name=str(path), source=str(path))


def _short_names() -> dict[str, Path]:
    """Short names for checkpoints that ship inside the package (the model organism)."""
    try:
        from qwen3_scope.organism import ORGANISM_DIR, ORGANISM_NAME
    except ImportError:  # organism assets not present in this install
        return {}
    return {ORGANISM_NAME: Path(ORGANISM_DIR)}


def resolve_model(name_or_path: str | Path) -> Qwen3ModelSpec:
    """Official name (case-insensitive, `Qwen/` optional), short name (`organism`), or local directory."""
    text = str(name_or_path)
    short = _short_names()
    if text in short:
        return replace(_read_local(short[text]), name=text)
    key = text.lower().removeprefix("qwen/")
    for official, spec in QWEN3_FAMILY.items():
        if official.lower().removeprefix("qwen/") == key:
            return spec
    path = Path(text).expanduser()
    if path.is_dir():
        for short_name, short_dir in short.items():  # a bundled checkpoint keeps its short name
            if path.resolve() == short_dir.resolve():
                return replace(_read_local(short_dir), name=short_name)
        return _read_local(path)
    raise ModelNotFoundError(
        f"unknown model {text!r}: not a Qwen3 family name, a short name ({', '.join(short) or 'none'}), "
        f"nor an existing local directory. Known names: {', '.join(list_models())}. "
        "For your own checkpoint pass the path of a directory holding config.json and the weights."
    )

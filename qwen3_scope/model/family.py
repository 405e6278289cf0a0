"""The Qwen3 generation: published shapes, name resolution and local checkpoints.

Why a registry of our own: every later stage (hook names, SAE widths, memory plans, recipes) needs a
model's shape *before* any weights exist, and most users here have no network to read a hub config.
The generation has three kinds of model: dense transformers (Qwen3, Qwen3-2507), mixture-of-experts
transformers (Qwen3-30B-A3B, Qwen3-235B-A22B: every MLP is a routed expert block) and the hybrid Qwen3.5
models whose layers alternate Gated DeltaNet linear attention with full attention (`layer_types`).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from qwen3_scope.core.errors import ConfigError, CorruptFileError

# The bundled model organism: its short name, and where its checkpoint ships inside the package
# (`qwen3_scope.organism` re-exports both; the model layer does not import the organism package).
ORGANISM_NAME = "organism"
ORGANISM_DIR = Path(__file__).resolve().parents[1] / "organism" / "assets" / "model"

QWEN3_HEAD_DIM = 128
QWEN3_VOCAB = 151_936
QWEN3_ROPE_THETA = 1_000_000.0
QWEN3_MAX_POSITIONS = 40_960
QWEN3_ARCHITECTURE = "Qwen3ForCausalLM"
QWEN3_MOE_ARCHITECTURE = "Qwen3MoeForCausalLM"
QWEN3_5_ARCHITECTURE = "Qwen3_5ForCausalLM"
QWEN3_5_MOE_ARCHITECTURE = "Qwen3_5MoeForCausalLM"
QWEN3_5_VOCAB = 248_320
QWEN3_5_HEAD_DIM = 256
QWEN3_5_ROPE_THETA = 10_000_000.0
QWEN3_5_MAX_POSITIONS = 262_144
QWEN3_5_LINEAR_HEAD_DIM = 128
QWEN3_5_FULL_ATTENTION_INTERVAL = 4

FULL_ATTENTION = "full_attention"
LINEAR_ATTENTION = "linear_attention"

# model_type of config.json -> (architecture, kind)
MODEL_TYPES: dict[str, tuple[str, str]] = {
    "qwen3": (QWEN3_ARCHITECTURE, "dense"),
    "qwen3_moe": (QWEN3_MOE_ARCHITECTURE, "moe"),
    "qwen3_5": (QWEN3_5_ARCHITECTURE, "hybrid"),
    "qwen3_5_text": (QWEN3_5_ARCHITECTURE, "hybrid"),
    "qwen3_5_moe": (QWEN3_5_MOE_ARCHITECTURE, "hybrid-moe"),
    "qwen3_5_moe_text": (QWEN3_5_MOE_ARCHITECTURE, "hybrid-moe"),
}
KINDS: tuple[str, ...] = ("dense", "moe", "hybrid", "hybrid-moe")
_KNOWN = {arch for arch, _ in MODEL_TYPES.values()}

# Chat modes: how a model's template treats the <think> block.
#   "switch": the original Qwen3 hybrid-thinking models and Qwen3.5 (enable_thinking chooses; we default to off),
#   "always": the -Thinking-2507 models (their template always opens a think block),
#   "never":  the -Instruct-2507 models (no think block at all).
THINKING_MODES: tuple[str, ...] = ("switch", "always", "never")


class ModelNotFoundError(ConfigError):
    """Raised for a name that is neither a Qwen3 family member, a short name, nor a Qwen3 checkpoint."""


class CheckpointConfigError(ModelNotFoundError, CorruptFileError):
    """A local checkpoint whose config.json is missing, empty, truncated or not a Qwen3 config."""


class LayerOutOfRangeError(ConfigError, IndexError):
    """A layer index the model does not have."""


@dataclass(frozen=True)
class Qwen3ModelSpec:
    """Shape of one model of the Qwen3 generation; `source` is a hub id or a local directory of weights.

    MoE models set `n_experts`/`n_experts_active`/`d_expert` (`d_mlp` is then the config's unused dense
    width); hybrid Qwen3.5 models set `layer_types` (one entry per layer, `linear_attention` or
    `full_attention`) and the Gated DeltaNet head counts.
    """

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
    architecture: str = QWEN3_ARCHITECTURE
    generation: str = "Qwen3"
    thinking: str = "switch"
    n_experts: int = 0
    n_experts_active: int = 0
    d_expert: int = 0
    d_shared_expert: int = 0
    layer_types: tuple[str, ...] = ()
    linear_n_k_heads: int = 0
    linear_n_v_heads: int = 0
    linear_head_dim: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def d_attn(self) -> int:
        """Width of the concatenated attention heads (the input of o_proj)."""
        return self.n_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def is_hybrid(self) -> bool:
        return LINEAR_ATTENTION in self.layer_types

    @property
    def kind(self) -> str:
        """dense, moe, hybrid (Qwen3.5 dense) or hybrid-moe (Qwen3.5 MoE)."""
        if self.is_hybrid:
            return "hybrid-moe" if self.is_moe else "hybrid"
        return "moe" if self.is_moe else "dense"

    @property
    def key(self) -> str:
        """Short id used in SAE ids: `qwen3-4b`, `organism`, or a local checkpoint's directory name."""
        if self.name.lower().startswith("qwen/"):
            return self.name.lower().removeprefix("qwen/")
        return Path(self.name).name.lower()

    @property
    def is_local(self) -> bool:
        return bool(self.source) and Path(self.source).is_dir()

    def layer_type(self, layer: int) -> str:
        """`full_attention` or `linear_attention` (Gated DeltaNet) for a layer."""
        self.check_layer(layer)
        return self.layer_types[layer] if self.layer_types else FULL_ATTENTION

    def full_attention_layers(self) -> list[int]:
        return [layer for layer in range(self.n_layers) if self.layer_type(layer) == FULL_ATTENTION]

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < self.n_layers:
            raise LayerOutOfRangeError(
                f"layer {layer!r} is out of range for {self.name}: it has {self.n_layers} layers, "
                f"so use 0..{self.n_layers - 1}."
            )
        return layer

    def parameter_counts(self) -> dict[str, int]:
        """Total and per-token active parameters: matmul weights, embeddings and RMSNorm gains (exact for
        dense and MoE Qwen3; Gated DeltaNet's small conv/decay parameters are left out for Qwen3.5)."""
        if self.is_hybrid:
            linear_k = self.linear_n_k_heads * self.linear_head_dim
            linear_v = self.linear_n_v_heads * self.linear_head_dim
            linear_mixer = (
                self.d_model * (2 * linear_k + 2 * linear_v + 2 * self.linear_n_v_heads) + linear_v * self.d_model
            )
            full_mixer = (
                self.d_model * (2 * self.d_attn + 2 * self.n_kv_heads * self.head_dim) + self.d_attn * self.d_model
            )
        else:
            full_mixer = self.d_model * (self.d_attn + 2 * self.n_kv_heads * self.head_dim) + self.d_attn * self.d_model
            linear_mixer = full_mixer
        mixers = sum(
            full_mixer if self.layer_type(layer) == FULL_ATTENTION else linear_mixer for layer in range(self.n_layers)
        )
        if self.is_moe:
            expert = 3 * self.d_model * self.d_expert
            shared = 3 * self.d_model * self.d_shared_expert + (self.d_model if self.d_shared_expert else 0)
            router = self.d_model * self.n_experts
            mlp_total = self.n_experts * expert + shared + router
            mlp_active = self.n_experts_active * expert + shared + router
        else:
            mlp_total = mlp_active = 3 * self.d_model * self.d_mlp
        embed = self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
        norms = self.n_layers * 2 * self.d_model + self.d_model + 2 * self.head_dim * len(self.full_attention_layers())
        return {
            "total": mixers + self.n_layers * mlp_total + embed + norms,
            "active": mixers + self.n_layers * mlp_active + embed + norms,
        }

    def to_hf_config(self, n_layers: int | None = None, **overrides: Any):
        """The transformers config of this shape (optionally fewer layers, for random test models).

        Dense -> `Qwen3Config`, MoE -> `Qwen3MoeConfig`, Qwen3.5 -> `Qwen3_5TextConfig` /
        `Qwen3_5MoeTextConfig` (the text model of the published multimodal checkpoints).
        """
        import transformers  # lazy: keeps the CLI (family table, info) from importing transformers

        layers = n_layers or self.n_layers
        kwargs: dict[str, Any] = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.d_mlp,
            num_hidden_layers=layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            tie_word_embeddings=self.tie_embeddings,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            architectures=[self.architecture],
        )
        if self.is_moe:
            kwargs.update(
                num_experts=self.n_experts,
                num_experts_per_tok=self.n_experts_active,
                moe_intermediate_size=self.d_expert,
            )
        if self.is_hybrid:
            kwargs.update(
                layer_types=list(self.layer_types[:layers]),
                linear_num_key_heads=self.linear_n_k_heads,
                linear_num_value_heads=self.linear_n_v_heads,
                linear_key_head_dim=self.linear_head_dim,
                linear_value_head_dim=self.linear_head_dim,
                rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta, "partial_rotary_factor": 0.25},
            )
            if self.is_moe:
                kwargs.update(shared_expert_intermediate_size=self.d_shared_expert)
                kwargs.pop("intermediate_size")
        else:
            kwargs["rope_theta"] = self.rope_theta
        kwargs.update(overrides)
        config_class = {
            QWEN3_ARCHITECTURE: "Qwen3Config",
            QWEN3_MOE_ARCHITECTURE: "Qwen3MoeConfig",
            QWEN3_5_ARCHITECTURE: "Qwen3_5TextConfig",
            QWEN3_5_MOE_ARCHITECTURE: "Qwen3_5MoeTextConfig",
        }[self.architecture]
        return getattr(transformers, config_class)(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out["kind"] = self.kind
        return out


def hybrid_layer_types(n_layers: int, interval: int = QWEN3_5_FULL_ATTENTION_INTERVAL) -> tuple[str, ...]:
    """Qwen3.5's layout: three Gated DeltaNet layers, then one full-attention layer, repeated."""
    return tuple(FULL_ATTENTION if (i + 1) % interval == 0 else LINEAR_ATTENTION for i in range(n_layers))


# Published config.json values. Sources checked (see the README's family table): the Qwen model cards and
# config.json files, TransformerLens 3.9's model registry (names, architectures), transformers 5.24's config
# defaults (Qwen3MoeConfig = Qwen3-30B-A3B, Qwen3_5TextConfig = Qwen3.5-9B, Qwen3_5MoeTextConfig =
# Qwen3.5-35B-A3B) and SAELens' Qwen-Scope registry (d_model and layer count of every Qwen-Scope model).
_FAMILY_SHAPES: dict[str, tuple[int, int, int, int, int, bool]] = {
    #        layers d_model d_mlp heads kv  tied        (head_dim 128, vocab 151936, rope_theta 1e6, 40960 positions)
    "0.6B": (28, 1024, 3072, 16, 8, True),
    "1.7B": (28, 2048, 6144, 16, 8, True),
    "4B": (36, 2560, 9728, 32, 8, True),
    "8B": (36, 4096, 12288, 32, 8, False),
    "14B": (40, 5120, 17408, 40, 8, False),
    "32B": (64, 5120, 25600, 64, 8, False),
}

_MOE_SHAPES: dict[str, tuple[int, int, int, int, int, int, int, int, bool]] = {
    #              layers d_model d_mlp heads kv experts active d_expert has_base   (untied, head_dim 128)
    "30B-A3B": (48, 2048, 6144, 32, 4, 128, 8, 768, True),
    "235B-A22B": (94, 4096, 12288, 64, 4, 128, 8, 1536, False),  # Qwen released no 235B-A22B base model
}

# 2507 releases: (base size, rope_theta, max positions); same shapes as their originals.
_2507_RELEASES: dict[str, tuple[float, int]] = {
    "4B": (5_000_000.0, 262_144),
    "30B-A3B": (10_000_000.0, 262_144),
    "235B-A22B": (5_000_000.0, 262_144),
}

_QWEN3_5_SHAPES: dict[str, tuple[int, int, int, int, int, int, bool, bool]] = {
    #        layers d_model d_mlp heads kv  linear_v_heads tied has_base  (linear k heads 16, head_dim 256)
    "0.8B": (24, 1024, 3584, 8, 2, 16, True, True),
    "2B": (24, 2048, 6144, 8, 2, 16, True, True),
    "4B": (32, 2560, 9216, 16, 4, 32, True, True),
    "9B": (32, 4096, 12288, 16, 4, 32, False, True),
    "27B": (64, 5120, 17408, 24, 4, 48, False, False),
}
_QWEN3_5_MOE_SHAPES: dict[str, tuple[int, int, int, int, int, int, int, int, int]] = {
    #              layers d_model heads kv experts active d_expert d_shared linear_v_heads   (untied)
    "35B-A3B": (40, 2048, 16, 2, 256, 8, 512, 512, 32),
}


def _family() -> dict[str, Qwen3ModelSpec]:
    specs: dict[str, Qwen3ModelSpec] = {}

    def add(spec: Qwen3ModelSpec) -> None:
        specs[spec.name] = replace(spec, source=spec.name)

    for size, (layers, d_model, d_mlp, heads, kv, tied) in _FAMILY_SHAPES.items():
        for instruct in (True, False) if size != "32B" else (True,):  # Qwen published no Qwen3-32B-Base
            add(
                Qwen3ModelSpec(
                    name=f"Qwen/Qwen3-{size}" + ("" if instruct else "-Base"),
                    n_layers=layers,
                    d_model=d_model,
                    d_mlp=d_mlp,
                    n_heads=heads,
                    n_kv_heads=kv,
                    tie_embeddings=tied,
                    instruct=instruct,
                )
            )
    for size, (layers, d_model, d_mlp, heads, kv, experts, active, d_expert, has_base) in _MOE_SHAPES.items():
        moe: dict[str, Any] = dict(
            n_layers=layers,
            d_model=d_model,
            d_mlp=d_mlp,
            n_heads=heads,
            n_kv_heads=kv,
            tie_embeddings=False,
            architecture=QWEN3_MOE_ARCHITECTURE,
            n_experts=experts,
            n_experts_active=active,
            d_expert=d_expert,
        )
        for instruct in (True, False) if has_base else (True,):
            add(Qwen3ModelSpec(name=f"Qwen/Qwen3-{size}" + ("" if instruct else "-Base"), instruct=instruct, **moe))
    for size, (rope_theta, positions) in _2507_RELEASES.items():
        original = specs[f"Qwen/Qwen3-{size}"]
        for variant, thinking in (("Instruct", "never"), ("Thinking", "always")):
            add(
                replace(
                    original,
                    name=f"Qwen/Qwen3-{size}-{variant}-2507",
                    generation="Qwen3-2507",
                    thinking=thinking,
                    rope_theta=rope_theta,
                    max_position_embeddings=positions,
                )
            )
    hybrid: dict[str, Any] = dict(
        head_dim=QWEN3_5_HEAD_DIM,
        vocab_size=QWEN3_5_VOCAB,
        rope_theta=QWEN3_5_ROPE_THETA,
        max_position_embeddings=QWEN3_5_MAX_POSITIONS,
        generation="Qwen3.5",
        linear_n_k_heads=16,
        linear_head_dim=QWEN3_5_LINEAR_HEAD_DIM,
    )
    for size, (layers, d_model, d_mlp, heads, kv, v_heads, tied, has_base) in _QWEN3_5_SHAPES.items():
        for instruct in (True, False) if has_base else (True,):
            add(
                Qwen3ModelSpec(
                    name=f"Qwen/Qwen3.5-{size}" + ("" if instruct else "-Base"),
                    n_layers=layers,
                    d_model=d_model,
                    d_mlp=d_mlp,
                    n_heads=heads,
                    n_kv_heads=kv,
                    tie_embeddings=tied,
                    instruct=instruct,
                    architecture=QWEN3_5_ARCHITECTURE,
                    layer_types=hybrid_layer_types(layers),
                    linear_n_v_heads=v_heads,
                    **hybrid,
                )
            )
    for size, (layers, d_model, heads, kv, experts, active, d_expert, d_shared, v_heads) in _QWEN3_5_MOE_SHAPES.items():
        for instruct in (True, False):
            add(
                Qwen3ModelSpec(
                    name=f"Qwen/Qwen3.5-{size}" + ("" if instruct else "-Base"),
                    n_layers=layers,
                    d_model=d_model,
                    d_mlp=d_expert,
                    n_heads=heads,
                    n_kv_heads=kv,
                    tie_embeddings=False,
                    instruct=instruct,
                    architecture=QWEN3_5_MOE_ARCHITECTURE,
                    layer_types=hybrid_layer_types(layers),
                    n_experts=experts,
                    n_experts_active=active,
                    d_expert=d_expert,
                    d_shared_expert=d_shared,
                    linear_n_v_heads=v_heads,
                    **hybrid,
                )
            )
    return specs


QWEN3_FAMILY: dict[str, Qwen3ModelSpec] = _family()


def list_models(instruct: bool | None = None, kind: str | None = None, generation: str | None = None) -> list[str]:
    """Official names of the family, optionally filtered (instruct/base, kind, generation)."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
    return [
        n
        for n, s in QWEN3_FAMILY.items()
        if (instruct is None or s.instruct == instruct)
        and (kind is None or s.kind == kind)
        and (generation is None or s.generation == generation)
    ]


def spec_from_hf_config(config: dict[str, Any], name: str, source: str) -> Qwen3ModelSpec:
    """Build a spec from a config.json dict, refusing anything that is not a Qwen3-generation causal LM.

    A multimodal Qwen3.5 checkpoint (`Qwen3_5ForConditionalGeneration`) is read through its `text_config`.
    """
    architectures = config.get("architectures") or []
    if "text_config" in config and str(config.get("model_type", "")).startswith("qwen3_5"):
        config = {**config["text_config"], "architectures": architectures}
    model_type = config.get("model_type")
    known = _KNOWN
    if model_type not in MODEL_TYPES and not known & set(architectures):
        raise ModelNotFoundError(
            f"{source} is not a Qwen3 checkpoint (model_type={model_type!r}, architectures={architectures}). "
            f"qwen3-scope supports {', '.join(sorted(known))} models; point it at a directory saved by one of "
            "them with save_pretrained."
        )
    architecture = (
        MODEL_TYPES[model_type][0] if model_type in MODEL_TYPES else next(a for a in architectures if a in known)
    )
    n_heads = config["num_attention_heads"]
    rope = config.get("rope_parameters") or {}
    n_experts = int(config.get("num_experts") or config.get("num_local_experts") or 0)
    layer_types = (
        tuple(config.get("layer_types") or ())
        if architecture in (QWEN3_5_ARCHITECTURE, QWEN3_5_MOE_ARCHITECTURE)
        else ()
    )
    if (
        n_experts
        and architecture == QWEN3_MOE_ARCHITECTURE
        and (config.get("mlp_only_layers") or config.get("decoder_sparse_step", 1) != 1)
    ):
        raise ModelNotFoundError(
            f"{source} mixes dense and MoE layers (mlp_only_layers/decoder_sparse_step); TransformerLens' bridge "
            "and qwen3-scope support all-MoE Qwen3 models only (every published Qwen3 MoE model is all-MoE)."
        )
    return Qwen3ModelSpec(
        name=name,
        n_layers=config["num_hidden_layers"],
        d_model=config["hidden_size"],
        d_mlp=config.get("intermediate_size") or config.get("moe_intermediate_size") or 0,
        n_heads=n_heads,
        n_kv_heads=config.get("num_key_value_heads", n_heads),
        head_dim=config.get("head_dim") or config["hidden_size"] // n_heads,
        vocab_size=config["vocab_size"],
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(config.get("rope_theta") or rope.get("rope_theta", QWEN3_ROPE_THETA)),
        max_position_embeddings=config.get("max_position_embeddings", QWEN3_MAX_POSITIONS),
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        instruct=not name.endswith("-Base"),
        source=source,
        architecture=architecture,
        generation="Qwen3.5" if layer_types else "Qwen3",
        n_experts=n_experts,
        n_experts_active=int(config.get("num_experts_per_tok") or 0) if n_experts else 0,
        d_expert=int(config.get("moe_intermediate_size") or 0) if n_experts else 0,
        d_shared_expert=int(config.get("shared_expert_intermediate_size") or 0) if n_experts else 0,
        layer_types=layer_types,
        linear_n_k_heads=int(config.get("linear_num_key_heads") or 0) if layer_types else 0,
        linear_n_v_heads=int(config.get("linear_num_value_heads") or 0) if layer_types else 0,
        linear_head_dim=int(config.get("linear_key_head_dim") or 0) if layer_types else 0,
    )


_CONFIG_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")


def _read_local(path: Path) -> Qwen3ModelSpec:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointConfigError(
            f"{path} is a directory but has no config.json, so it is not a Hugging Face checkpoint. "
            "Save the model with Qwen3ForCausalLM.save_pretrained(dir) (and its tokenizer) first."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointConfigError(
            f"{config_file} is not valid JSON ({err}); expected the checkpoint's Hugging Face config. "
            "Re-save the checkpoint (model.save_pretrained(dir))."
        ) from err
    if not isinstance(config, dict):
        raise CheckpointConfigError(
            f"{config_file} holds a {type(config).__name__}, not a Hugging Face config mapping; re-save the checkpoint."
        )
    text: dict[str, Any] = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    missing = [key for key in _CONFIG_KEYS if key not in text]
    if missing and (config.get("model_type") in MODEL_TYPES or set(config.get("architectures") or ()) & _KNOWN):
        raise CheckpointConfigError(
            f"{config_file} lacks {', '.join(missing)}; it is truncated or not a complete Qwen3 config. "
            "Re-save the checkpoint (model.save_pretrained(dir))."
        )
    return spec_from_hf_config(config, name=str(path), source=str(path))


def _short_names() -> dict[str, Path]:
    """Short names for checkpoints that ship inside the package (the model organism)."""
    return {ORGANISM_NAME: ORGANISM_DIR} if ORGANISM_DIR.is_dir() else {}  # absent: an install without assets


def close_model_names(text: str, n: int = 4) -> list[str]:
    """Family names that look like `text` (for 'did you mean' hints)."""
    keys = {name.lower().removeprefix("qwen/"): name for name in QWEN3_FAMILY}
    matches = difflib.get_close_matches(text.lower().removeprefix("qwen/"), list(keys), n=n, cutoff=0.6)
    return [keys[m] for m in matches]


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
    close = close_model_names(text)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"unknown model {text!r}: not a Qwen3 family name, a short name ({', '.join(short) or 'none'}), "
        f"nor an existing local directory.{hint} Known names: {', '.join(list_models())}. "
        "For your own checkpoint pass the path of a directory holding config.json and the weights."
    )

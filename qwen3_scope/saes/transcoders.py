"""Transcoder training classes for SAELens: ReLU, JumpReLU and TopK, each with an optional skip connection.

A transcoder reads one activation (the MLP input) and reconstructs another (the MLP output):
    out = act(x @ W_enc + b_enc) @ W_dec + b_dec  [+ x @ W_skip.T]
SAELens 6.54 loads four transcoder kinds (`transcoder`, `skip_transcoder`, `jumprelu_transcoder`,
`jumprelu_skip_transcoder`, in `sae_lens.saes.transcoder`) but trains none. The training classes here are
registered in SAELens' training registry under those same architecture names, plus `topk_transcoder` and
`topk_skip_transcoder`, whose inference classes (SAELens has none) are registered here too; every class saves as
the SAELens inference architecture of the same name, so `SAE.load_from_disk` / `SAE.from_pretrained` return
`sae_lens.saes.transcoder.Transcoder` subclasses.

How the target reaches the loss: SAELens' trainers pass one tensor, `TrainStepInput.sae_in`. The suite's stream
(`training.stream`) delivers the input and the target activation of the same tokens from the same forward pass
concatenated on the last dimension, `[x ; y]` (d_in + d_out wide); `training_forward_pass` splits them, encodes x
and takes the MSE against y. Each class keeps SAELens' own sparsity losses of its SAE kind (L1 for ReLU, the
JumpReLU L0 penalty, TopK's AuxK, which reconstructs the residual of the target). Its `TrainStepOutput.sae_in` is
the target y, so SAELens' logged explained variance is that of the MLP output.

Normalisation: `normalize_activations` is "none" or "expected_average_only_in". With the latter, input and target are
scaled separately to SAELens' convention, mean norm sqrt(width): x' = s x with s = sqrt(d_in) / E||x|| and
y' = s t y with s t = sqrt(d_out) / E||y||, estimated on SAELens' norm-estimate batches by `TranscoderScaler`
(`use_transcoder_scalers(trainer)` installs it in SAELens' trainer; s is the trainer's `scaling_factor`, saved with
its checkpoints, t the SAE's `target_scale` buffer, saved with its weights). Why two factors: an MLP output can be
hundreds of times smaller than its RMS-normalised input (random models, some layers of real ones), and one scalar
over [x ; y] would leave the target invisible next to the input. After training `fold_activation_norm_scaling_factor(s)`
sets W_enc *= s, W_dec /= s t, b_dec /= s t, W_skip /= t (exact: pre-activations and thresholds do not change), so
the saved transcoder reads raw activations and writes raw MLP outputs with normalize_activations "none", which is what
SAELens' transcoder decode assumes (it does not un-normalise). Where a trainer sets only SAELens' scalar itself (the
data-parallel adapter's estimate over [x ; y]), t stays 1 and both halves share that scalar.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.sae import SAEConfig, TrainingSAE, TrainStepInput, TrainStepOutput
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.transcoder import (
    JumpReLUSkipTranscoderConfig,
    JumpReLUTranscoderConfig,
    SkipTranscoder,
    SkipTranscoderConfig,
    Transcoder,
    TranscoderConfig,
)
from sae_lens.training.activation_scaler import ActivationScaler
from torch import Tensor, nn

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.saes.fast_saes import _register

# The activation kinds a transcoder job can train, and their training architecture names (without / with W_skip).
TRANSCODER_KINDS = ("relu", "jumprelu", "topk")
_ARCHITECTURE_NAMES = {
    ("relu", False): "transcoder",
    ("relu", True): "skip_transcoder",
    ("jumprelu", False): "jumprelu_transcoder",
    ("jumprelu", True): "jumprelu_skip_transcoder",
    ("topk", False): "topk_transcoder",
    ("topk", True): "topk_skip_transcoder",
}


class TranscoderInputError(ConfigError):
    """A training batch that is not the [input ; target] concatenation a transcoder trains on."""


def transcoder_architecture(kind: str, skip: bool = False) -> str:
    """The architecture name of a transcoder kind (relu / jumprelu / topk), with or without a skip connection."""
    if kind not in TRANSCODER_KINDS:
        raise ConfigError(f"unknown transcoder kind {kind!r}; choose one of {', '.join(TRANSCODER_KINDS)}.")
    return _ARCHITECTURE_NAMES[(kind, bool(skip))]


def is_transcoder_architecture(architecture: str) -> bool:
    return architecture in _ARCHITECTURE_NAMES.values()


# ---------------------------------------------------------------------------------------------- inference (TopK)
@dataclass
class TopKTranscoderConfig(TranscoderConfig):
    """A TopK transcoder: the k largest pre-activations of each token, ReLU'd, the rest zero."""

    k: int = 32

    @classmethod
    def architecture(cls) -> str:
        return "topk_transcoder"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "k": self.k}


@dataclass
class TopKSkipTranscoderConfig(TopKTranscoderConfig):
    @classmethod
    def architecture(cls) -> str:
        return "topk_skip_transcoder"


class TopKTranscoder(Transcoder):
    """SAELens `Transcoder` with a TopK activation (SAELens 6.54 has no TopK transcoder inference class)."""

    cfg: TopKTranscoderConfig  # type: ignore[assignment]

    def encode(self, x: Tensor) -> Tensor:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        values, indices = hidden_pre.topk(self.cfg.k, dim=-1, sorted=False)
        acts = torch.zeros_like(hidden_pre).scatter_(-1, indices, values.relu())
        return self.hook_sae_acts_post(acts)

    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError(
            "folding decoder norms into a TopK transcoder would change which latents are in the top k; "
            "load it with fold_W_dec_norm=False."
        )

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> TopKTranscoder:
        return cls(TopKTranscoderConfig.from_dict(config_dict))


class TopKSkipTranscoder(TopKTranscoder, SkipTranscoder):
    """TopK transcoder with SAELens' skip connection (out += x @ W_skip.T)."""

    cfg: TopKSkipTranscoderConfig  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> TopKSkipTranscoder:
        return cls(TopKSkipTranscoderConfig.from_dict(config_dict))


# ---------------------------------------------------------------------------------------------- training configs
@dataclass(kw_only=True)
class TranscoderOptions:
    """What every transcoder training config adds to its SAE kind's config.

    d_out: width of the target activation (None: d_in, the MLP output of a Qwen3 layer is as wide as its input).
    """

    d_out: int | None = None
    skip: ClassVar[bool] = False

    def validate_transcoder_options(self) -> None:
        cfg: Any = self  # the SAE config this options class is mixed into (d_in, normalisation, ...)
        if self.d_out is None:
            self.d_out = cfg.d_in
        if self.d_out < 1:
            raise ConfigError(f"d_out={self.d_out} must be a positive width (the target activation's).")
        if cfg.apply_b_dec_to_input:
            raise ConfigError(
                "apply_b_dec_to_input=True cannot apply to a transcoder (b_dec lives in the output space); "
                "set apply_b_dec_to_input=False."
            )
        if cfg.normalize_activations not in ("none", "expected_average_only_in"):
            raise ConfigError(
                f"normalize_activations={cfg.normalize_activations!r} is not supported for transcoders: use 'none' or "
                "'expected_average_only_in' (input and target scaled separately, folded into the weights)."
            )
        if cfg.reshape_activations != "none":
            raise ConfigError("transcoders read whole activations; reshape_activations must be 'none'.")


@dataclass
class ReLUTranscoderTrainingConfig(StandardTrainingSAEConfig, TranscoderOptions):
    """ReLU transcoder (circuit-tracer's published kind) with SAELens' L1 penalty; saves as SAELens "transcoder"."""

    apply_b_dec_to_input: bool = False

    def __post_init__(self) -> None:
        self.validate_transcoder_options()
        super().__post_init__()

    @classmethod
    def architecture(cls) -> str:
        return "transcoder"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return TranscoderConfig


@dataclass
class ReLUSkipTranscoderTrainingConfig(ReLUTranscoderTrainingConfig):
    skip: ClassVar[bool] = True

    @classmethod
    def architecture(cls) -> str:
        return "skip_transcoder"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return SkipTranscoderConfig


@dataclass
class JumpReLUTranscoderTrainingConfig(JumpReLUTrainingSAEConfig, TranscoderOptions):
    """JumpReLU transcoder with SAELens' JumpReLU losses; saves as SAELens "jumprelu_transcoder"."""

    apply_b_dec_to_input: bool = False

    def __post_init__(self) -> None:
        self.validate_transcoder_options()
        super().__post_init__()

    @classmethod
    def architecture(cls) -> str:
        return "jumprelu_transcoder"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return JumpReLUTranscoderConfig


@dataclass
class JumpReLUSkipTranscoderTrainingConfig(JumpReLUTranscoderTrainingConfig):
    skip: ClassVar[bool] = True

    @classmethod
    def architecture(cls) -> str:
        return "jumprelu_skip_transcoder"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return JumpReLUSkipTranscoderConfig


@dataclass
class TopKTranscoderTrainingConfig(TopKTrainingSAEConfig, TranscoderOptions):
    """TopK transcoder with SAELens' AuxK dead-latent loss; saves as qwen3-scope's "topk_transcoder"."""

    apply_b_dec_to_input: bool = False

    def __post_init__(self) -> None:
        self.validate_transcoder_options()
        super().__post_init__()

    @classmethod
    def architecture(cls) -> str:
        return "topk_transcoder"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return TopKTranscoderConfig


@dataclass
class TopKSkipTranscoderTrainingConfig(TopKTranscoderTrainingConfig):
    skip: ClassVar[bool] = True

    @classmethod
    def architecture(cls) -> str:
        return "topk_skip_transcoder"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return TopKSkipTranscoderConfig


# ---------------------------------------------------------------------------------------------- training classes
class _TranscoderTraining(TrainingSAE[Any]):
    """Shared machinery, listed before SAELens' training class so that its encoder and losses stay SAELens'."""

    cfg: Any
    W_skip: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()  # SAELens' init of the SAE kind (W_dec / b_dec d_in wide, W_enc = W_dec.T)
        cfg = self.cfg
        if cfg.d_out != cfg.d_in:  # the decoder writes the target's width; W_enc keeps its own init
            w_dec = torch.empty(cfg.d_sae, cfg.d_out, dtype=self.dtype, device=self.device)
            nn.init.kaiming_uniform_(w_dec)
            if cfg.decoder_init_norm is not None:
                w_dec *= cfg.decoder_init_norm / w_dec.norm(dim=-1, keepdim=True)
            self.W_dec = nn.Parameter(w_dec)
            self.b_dec = nn.Parameter(torch.zeros(cfg.d_out, dtype=self.dtype, device=self.device))
        if cfg.skip:  # SAELens' SkipTranscoder layout: (d_out, d_in), zero at the start
            self.W_skip = nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in, dtype=self.dtype, device=self.device))

        # t of the module docstring: the target's extra scale in training (1 once folded, and in saved files)
        self.register_buffer("target_scale", torch.ones((), dtype=torch.float32, device=self.device))

    @torch.no_grad()
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        """Fold the input scale s and the target scale s t into the weights (see the module docstring)."""
        t = float(self.target_scale)
        self.W_enc.data *= scaling_factor
        self.W_dec.data /= scaling_factor * t
        self.b_dec.data /= scaling_factor * t
        if self.cfg.skip:
            self.W_skip.data /= t
        self.target_scale.fill_(1.0)
        self.cfg.normalize_activations = "none"

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        super().process_state_dict_for_saving_inference(state_dict)
        t = float(state_dict.pop("target_scale"))
        if t != 1.0:  # saved before the fold: the target scale goes into the decoder side (SAELens' files have none)
            for key in ("W_dec", "b_dec", "W_skip"):
                if key in state_dict:
                    state_dict[key] = state_dict[key] / t

    def process_sae_in(self, sae_in: Tensor) -> Tensor:
        """As SAELens' Transcoder: no b_dec subtraction (b_dec is in the output space)."""
        sae_in = self.hook_sae_input(sae_in.to(self.dtype))
        return self.run_time_activation_norm_fn_in(sae_in)

    def split(self, sae_in: Tensor) -> tuple[Tensor, Tensor]:
        """A training batch [x ; y] -> (input x, target y)."""
        d_in, d_out = self.cfg.d_in, self.cfg.d_out
        if sae_in.shape[-1] != d_in + d_out:
            raise TranscoderInputError(
                f"a {self.cfg.architecture()} training batch must be its input ({d_in} wide) and its target "
                f"({d_out} wide) concatenated on the last dimension ({d_in + d_out}), got {sae_in.shape[-1]}; "
                "train transcoders through qwen3-scope's suite trainer (--transcoders), which streams both."
            )
        return sae_in[..., :d_in], sae_in[..., d_in:]

    def skip_out(self, x: Tensor) -> Tensor | None:
        return x.to(self.W_skip.dtype) @ self.W_skip.T if self.cfg.skip else None

    def transcode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(the predicted target, the latent activations) of input activations x, skip connection included."""
        feature_acts = self.encode(x)
        out = self.decode(feature_acts)
        skip = self.skip_out(x)
        return (out if skip is None else out + skip), feature_acts

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_sae_output(self.transcode(x)[0])

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        if isinstance(getattr(self, "threshold", None), nn.Parameter):
            with torch.no_grad():  # SAELens' JumpReLU projection (its training_forward_pass is bypassed here)
                self.threshold.data.clamp_(min=0.0)
        x, y = self.split(step_input.sae_in)
        feature_acts, hidden_pre = self.encode_with_hidden_pre(x)
        sae_out = self.decode(feature_acts)
        skip = self.skip_out(x)
        if skip is not None:
            sae_out = sae_out + skip
        mse_loss = self.mse_loss_fn(sae_out, y).sum(dim=-1).mean()
        # SAELens' auxiliary losses see the target as `sae_in` (TopK's AuxK reconstructs the residual y - out)
        aux = self.calculate_aux_loss(
            step_input=replace(step_input, sae_in=y), feature_acts=feature_acts, hidden_pre=hidden_pre, sae_out=sae_out
        )
        losses = {"mse_loss": mse_loss, **(aux if isinstance(aux, dict) else {"aux_loss": aux})}
        return TrainStepOutput(
            sae_in=y,
            sae_out=sae_out,
            feature_acts=feature_acts,
            hidden_pre=hidden_pre,
            loss=sum(losses.values(), torch.zeros((), device=mse_loss.device)),
            losses=losses,
        )


class ReLUTranscoderTrainingSAE(_TranscoderTraining, StandardTrainingSAE):
    cfg: ReLUTranscoderTrainingConfig  # type: ignore[assignment]


class JumpReLUTranscoderTrainingSAE(_TranscoderTraining, JumpReLUTrainingSAE):
    cfg: JumpReLUTranscoderTrainingConfig  # type: ignore[assignment]


class TopKTranscoderTrainingSAE(_TranscoderTraining, TopKTrainingSAE):
    cfg: TopKTranscoderTrainingConfig  # type: ignore[assignment]


class TranscoderScaler(ActivationScaler):
    """SAELens' activation scaler for a transcoder's [x ; y] batches: x by s (`scaling_factor`, SAELens' field, saved in
    its trainer checkpoints) and y by s t (t: the SAE's `target_scale` buffer, saved with its weights)."""

    def __init__(self, sae: _TranscoderTraining):
        super().__init__()
        self.sae = sae

    def scale(self, acts: Tensor) -> Tensor:
        if self.scaling_factor is None:
            return acts
        x, y = self.sae.split(acts)
        s = self.scaling_factor
        return torch.cat([x * s, y * (s * float(self.sae.target_scale))], dim=-1)

    def unscale(self, acts: Tensor) -> Tensor:
        raise NotImplementedError("a transcoder's output is unscaled by folding (fold_activation_norm_scaling_factor).")

    @torch.no_grad()
    def estimate_scaling_factor(self, d_in: int, data_provider: Any, n_batches_for_norm_estimate: int = 1000) -> None:
        """s = sqrt(d_in) / E||x|| and s t = sqrt(d_out) / E||y|| over the norm-estimate batches (sums in float64)."""
        sums = torch.zeros(2, dtype=torch.float64)
        count = 0
        for _ in range(n_batches_for_norm_estimate):
            x, y = self.sae.split(next(data_provider))
            sums += torch.stack([x.double().norm(dim=-1).sum(), y.double().norm(dim=-1).sum()]).cpu()
            count += x.shape[0]
        mean_x, mean_y = (sums / max(count, 1)).tolist()
        self.scaling_factor = d_in**0.5 / mean_x
        target = self.sae.cfg.d_out**0.5 / mean_y if mean_y > 0 else self.scaling_factor
        self.sae.target_scale.fill_(target / self.scaling_factor)


def use_transcoder_scalers(trainer: Any) -> int:
    """Give every transcoder of a SAELens `SAETrainer` / `MultiSAETrainer` its `TranscoderScaler` (call it right after
    building the trainer, before `load_checkpoint`); returns how many were installed."""
    trainers = list(getattr(trainer, "trainers", {}).values()) or [trainer]
    installed = 0
    for single in trainers:
        if isinstance(single.sae, _TranscoderTraining) and not isinstance(single.activation_scaler, TranscoderScaler):
            scaler = TranscoderScaler(single.sae)
            scaler.scaling_factor = single.activation_scaler.scaling_factor
            single.activation_scaler = scaler
            installed += 1
    return installed


_TRAINING: dict[str, tuple[type, type]] = {
    "transcoder": (ReLUTranscoderTrainingSAE, ReLUTranscoderTrainingConfig),
    "skip_transcoder": (ReLUTranscoderTrainingSAE, ReLUSkipTranscoderTrainingConfig),
    "jumprelu_transcoder": (JumpReLUTranscoderTrainingSAE, JumpReLUTranscoderTrainingConfig),
    "jumprelu_skip_transcoder": (JumpReLUTranscoderTrainingSAE, JumpReLUSkipTranscoderTrainingConfig),
    "topk_transcoder": (TopKTranscoderTrainingSAE, TopKTranscoderTrainingConfig),
    "topk_skip_transcoder": (TopKTranscoderTrainingSAE, TopKSkipTranscoderTrainingConfig),
}
_INFERENCE: dict[str, tuple[type, type]] = {
    "topk_transcoder": (TopKTranscoder, TopKTranscoderConfig),
    "topk_skip_transcoder": (TopKSkipTranscoder, TopKSkipTranscoderConfig),
}


def register_transcoders() -> None:
    """Register the six transcoder training architectures and the TopK inference classes with SAELens.
    Idempotent; a different class already registered under one of these names is an error."""
    for name, (cls, cfg_cls) in _TRAINING.items():
        _register(SAE_TRAINING_CLASS_REGISTRY, name, cls, cfg_cls)
    for name, (cls, cfg_cls) in _INFERENCE.items():
        _register(SAE_CLASS_REGISTRY, name, cls, cfg_cls)

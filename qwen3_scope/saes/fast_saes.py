"""Fast TopK and JumpReLU training SAEs for SAELens (architectures "topk_fast" and "jumprelu_fast").

Why: SAELens' TopKTrainingSAE / JumpReLUTrainingSAE run the decoder and the whole backward as dense
(tokens x d_sae) matmuls, although only the active latents of each token matter. These subclasses keep
SAELens' math (same losses, same gradients, AuxK and dead-latent accounting included) but run only the
encoder densely, in bfloat16 where the hardware has native bf16 matmuls, and everything else over the
active (token, latent) pairs (see sparse_ops). Weights stay fp32 masters. They save as plain SAELens
"topk" / "jumprelu" inference SAEs.

Use: `LanguageModelSAERunnerConfig(sae=FastTopKTrainingSAEConfig(d_in=..., d_sae=..., k=...), ...)`.

Fused Adam: SAELens' `SAETrainer.__init__` builds a plain `Adam(sae.parameters(), lr, betas)` and offers no
factory to change it, so the switch happens right after the trainer exists: `enable_fused_adam(trainer)`
(qwen3-scope's suite trainer calls it). Nothing is installed process-wide: an optimizer nobody passed to
`enable_fused_adam` is never touched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.jumprelu_sae import (
    JumpReLU,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
    Step,
)
from sae_lens.saes.sae import SAEConfig, TrainingSAE, TrainStepInput, TrainStepOutput
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
from torch import Tensor
from torch.autograd.profiler import record_function

from qwen3_scope.core.compat import module_has_hooks
from qwen3_scope.core.errors import ConfigError, Qwen3ScopeError
from qwen3_scope.saes.sparse_ops import (
    BufferPool,
    Pairs,
    SparseDecode,
    SparseEncode,
    SparseStep,
    resolve_compute_dtype,
)

# rect() in SAELens' JumpReLU is nonzero for |h - t| < bandwidth / 2; selecting a slightly wider band keeps
# every pair it can touch whatever the rounding, and the exact test then runs per pair.
_BAND_MARGIN = 1.001


@dataclass(kw_only=True)
class FastTrainingOptions:
    """Speed options shared by the fast training SAE configs.

    compute_dtype: dtype of the encoder matmul and the sparse products; "auto" picks bfloat16 where matmuls
        run natively in it (AMX/AVX512-BF16 CPUs, bf16 GPUs), else float32 (exactly SAELens' math).
    max_pair_density: above this share of active pairs in a (tokens x latents) block, dense matmuls are
        cheaper than gathers; a TopK SAE with k / d_sae above it (or a JumpReLU batch that dense) runs
        SAELens' own dense step, under bf16 autocast when compute_dtype is bf16.
    fused_adam: let `enable_fused_adam(trainer)` switch the SAELens trainer's Adam over these parameters to
        torch's fused kernel (same update, one pass over memory instead of ~10).
    """

    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    max_pair_density: float = 1 / 32
    fused_adam: bool = True

    def validate_fast_options(self) -> None:
        if self.compute_dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(
                f"compute_dtype={self.compute_dtype!r} is not supported; use 'auto', 'float32' or 'bfloat16'."
            )
        if not 0 < self.max_pair_density <= 1:
            raise ConfigError(
                f"max_pair_density={self.max_pair_density} must be in (0, 1]; it is the share of active "
                "(token, latent) pairs above which dense matmuls are used (default 1/32)."
            )


@dataclass
class FastTopKTrainingSAEConfig(TopKTrainingSAEConfig, FastTrainingOptions):
    """TopKTrainingSAEConfig plus FastTrainingOptions; saves as a SAELens "topk" SAE."""

    def __post_init__(self) -> None:
        self.validate_fast_options()
        super().__post_init__()

    @classmethod
    def architecture(cls) -> str:
        return "topk_fast"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return TopKSAEConfig


@dataclass
class FastJumpReLUTrainingSAEConfig(JumpReLUTrainingSAEConfig, FastTrainingOptions):
    """JumpReLUTrainingSAEConfig plus FastTrainingOptions and dead-latent reopening; saves as a SAELens
    "jumprelu" SAE (the reopening fields are training-only and do not reach the saved cfg.json).

    reopen_window: a latent that has not fired for this many steps is reopened (0: never). Why: a JumpReLU
        latent whose pre-activations all sit below threshold - bandwidth/2 gets no gradient at all (the
        straight-through band never reaches it), so once the rising thresholds of the L0 penalty leave it
        there it stays dead; AuxK does this job for TopK, nothing does it for JumpReLU.
    reopen_until_step: reopen only up to this step (None: the whole run), so the last steps settle the
        reopened latents under the ordinary loss.
    reopen_rate: the share of a batch's tokens a reopened latent fires on (None: target_l0 / d_sae, the
        average latent's rate). Reopening raises the latent's b_enc so that that share of the batch's
        pre-activations clear its threshold; the tokens just below it are then inside the band where gradients flow.
    reopen_resample_after: from a latent's n-th reopening on (n = this value; 0: never, 1: every time), it also
        gets a new direction (encoder column and decoder row): the reconstruction error of one of the batch's
        tokens, drawn with probability proportional to its squared error (the resampling of Bricken et al. 2023,
        "Towards Monosemanticity"), scaled to the live latents' mean norms. Why: raising b_enc alone revives a latent
        along the direction it died with; one that nothing in the data needs keeps going silent. Why not at the
        first reopening: a rare but real feature (silent for a window, then needed again) would lose its direction.
    """

    reopen_window: int = 0
    reopen_until_step: int | None = None
    reopen_rate: float | None = None
    reopen_resample_after: int = 0

    def __post_init__(self) -> None:
        self.validate_fast_options()
        if self.reopen_window < 0:
            raise ConfigError(f"reopen_window={self.reopen_window} must be >= 0 (steps without firing; 0 = off).")
        if self.reopen_rate is not None and not 0 < self.reopen_rate < 1:
            raise ConfigError(f"reopen_rate={self.reopen_rate} must be in (0, 1), e.g. target_l0 / d_sae.")
        if self.reopen_resample_after < 0:
            raise ConfigError(f"reopen_resample_after={self.reopen_resample_after} must be >= 0 (0 = never resample).")
        super().__post_init__()

    @classmethod
    def architecture(cls) -> str:
        return "jumprelu_fast"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return JumpReLUSAEConfig


class _FastTraining(TrainingSAE[Any]):
    """Shared machinery; listed before the stock training class so that everything else stays SAELens'."""

    cfg: Any

    @property
    def pool(self) -> BufferPool:
        pool = self.__dict__.get("_buffer_pool")
        if pool is None:
            pool = self.__dict__["_buffer_pool"] = BufferPool()
        return pool

    @property
    def compute_dtype(self) -> torch.dtype:
        dtype = resolve_compute_dtype(self.cfg.compute_dtype, self.W_enc.device)
        return self.W_enc.dtype if dtype.itemsize > self.W_enc.dtype.itemsize else dtype

    def _sparse_path_possible(self, step_input: TrainStepInput) -> bool:
        hooked = any(module_has_hooks(hook) for hook in self.hook_dict.values())
        return not hooked and not step_input.sae_in.requires_grad

    def _stock_training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        """SAELens' own dense step, with bf16 matmuls (autocast) when the compute dtype is bf16."""
        device = self.W_enc.device
        bf16 = self.compute_dtype == torch.bfloat16 and self.W_enc.dtype != torch.bfloat16
        context = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with context:
            return super().training_forward_pass(step_input)

    def _dense_pre_activations(self, sae_in: Tensor, scale: Tensor | None) -> Tensor:
        """(sae_in @ W_enc + b_enc) * scale for the whole batch, the one dense matmul of a step."""
        W_enc, b_enc, dtype = self.W_enc, self.b_enc, self.compute_dtype
        hidden, _ = self.pool.take("hidden_pre", (sae_in.shape[0], W_enc.shape[1]), dtype, sae_in.device)
        if dtype == W_enc.dtype:  # SAELens' op order, so fp32 results match the stock class bit for bit
            torch.mm(sae_in, W_enc, out=hidden).add_(b_enc)
            return hidden if scale is None else hidden.mul_(scale)
        weight, _ = self.pool.take("W_enc_c", tuple(W_enc.shape), dtype, sae_in.device)
        weight.copy_(W_enc)
        bias = b_enc
        if scale is not None:  # fold the decoder-norm rescaling into the (low precision) weight copy
            weight.mul_(scale.to(dtype))
            bias = b_enc * scale
        return torch.addmm(bias.to(dtype), sae_in, weight, out=hidden)

    def _decoder_copy(self) -> Tensor:
        W_dec, dtype = self.W_dec, self.compute_dtype
        if W_dec.dtype == dtype:
            return W_dec.detach()
        copy, _ = self.pool.take("W_dec_c", tuple(W_dec.shape), dtype, W_dec.device)
        return copy.copy_(W_dec)

    def _sparse_step(self, sae_in: Tensor, enc: list[Pairs], dec: list[Pairs], W_dec_c: Tensor) -> SparseStep:
        dtype = self.compute_dtype
        return SparseStep(
            enc_pairs=enc,
            dec_pairs=dec,
            sae_in=sae_in.to(dtype),
            W_dec=W_dec_c,
            apply_b_dec_to_input=self.cfg.apply_b_dec_to_input,
            compute_dtype=dtype,
            pool=self.pool,
        )

    def _finish_decode(self, decoded: Tensor) -> Tensor:
        """The tail of SAELens' decode: + b_dec, hook, output normalization, reshape."""
        sae_out = self.hook_sae_recons(decoded + self.b_dec)
        sae_out = self.run_time_activation_norm_fn_out(sae_out)
        return self.reshape_fn_out(sae_out, self.d_head)

    def _dense_feature_acts(self, pairs: Pairs, values: Tensor) -> Tensor:
        """The (tokens, d_sae) activations SAELens' trainer counts firing latents on."""
        shape = (pairs.n_rows, pairs.n_cols)
        acts, notes = self.pool.take("feature_acts", shape, values.dtype, values.device, zeros=True)
        flat = pairs.rows * pairs.n_cols + pairs.cols
        acts.view(-1).index_put_((flat,), values)
        notes["dirty"] = flat
        return acts

    def _mse(self, sae_out: Tensor, sae_in: Tensor) -> Tensor:
        return self.mse_loss_fn(sae_out, sae_in).sum(dim=-1).mean()


class FastTopKTrainingSAE(_FastTraining, TopKTrainingSAE):
    """TopKTrainingSAE whose training step decodes and backpropagates through the k active latents only."""

    cfg: FastTopKTrainingSAEConfig  # type: ignore[assignment]

    def __init__(self, cfg: FastTopKTrainingSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        if self.cfg.k > self.cfg.max_pair_density * self.cfg.d_sae or not self._sparse_path_possible(step_input):
            return self._stock_training_forward_pass(step_input)
        with torch.autocast(self.W_enc.device.type, enabled=False):
            return self._sparse_training_forward_pass(step_input)

    def _sparse_training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        cfg = self.cfg
        with torch.no_grad(), record_function("fast_sae.encoder_gemm"):
            sae_in = self.process_sae_in(step_input.sae_in).to(self.compute_dtype)
            W_dec_c = self._decoder_copy()
            norms = self.W_dec.norm(dim=-1) if cfg.rescale_acts_by_decoder_norm else None
            hidden_pre = self._dense_pre_activations(sae_in, norms)
        with torch.no_grad(), record_function("fast_sae.select"):
            top_values, top_indices = hidden_pre.topk(cfg.k, dim=-1, sorted=False)
            main = Pairs.from_topk(top_indices, cfg.d_sae, cfg.max_pair_density)
            top_values = top_values.reshape(-1).float()
            # SAELens decodes relu(hidden_pre) * (1 / norm); relu commutes with that positive scale.
            inv_norms = None if norms is None else 1 / norms
            pre = [top_values if inv_norms is None else top_values * inv_norms[main.cols]]
            enc, dec = [main], [main]
            aux = self._auxk_pairs(step_input, hidden_pre, inv_norms)
            if aux is not None:
                enc.append(aux[0])
                dec.append(aux[0])
                pre.append(aux[1])
            step = self._sparse_step(sae_in, enc, dec, W_dec_c)
        with record_function("fast_sae.sparse_forward"):
            pre_acts = SparseEncode.apply(step, self.W_enc, self.b_enc, self.b_dec, *pre)
            decoded = SparseDecode.apply(step, self.W_dec, pre_acts[0].relu(), *pre_acts[1:])
            sae_out = self._finish_decode(decoded[0])
            mse_loss = self._mse(sae_out, step_input.sae_in)
            if aux is None:
                aux_loss = sae_out.new_tensor(0.0)
            else:  # SAELens' AuxK: the top dead latents reconstruct the live latents' residual
                recons = self.reshape_fn_out(decoded[1], self.d_head)
                residual = (step_input.sae_in - sae_out).detach()
                aux_loss = cfg.aux_loss_coefficient * aux[2] * (recons - residual).pow(2).sum(dim=-1).mean()
            with torch.no_grad():
                feature_acts = self._dense_feature_acts(main, top_values.relu())
        return TrainStepOutput(
            sae_in=step_input.sae_in,
            sae_out=sae_out,
            feature_acts=feature_acts,
            hidden_pre=hidden_pre,
            loss=mse_loss + aux_loss,
            losses={"mse_loss": mse_loss, "auxiliary_reconstruction_loss": aux_loss},
        )

    def _auxk_pairs(
        self, step_input: TrainStepInput, hidden_pre: Tensor, inv_norms: Tensor | None
    ) -> tuple[Pairs, Tensor, float] | None:
        """SAELens' AuxK selection (top d_in/2 dead latents per token), restricted to the dead columns."""
        dead = step_input.dead_neuron_mask
        num_dead = 0 if dead is None else int(dead.sum())
        if num_dead == 0:
            return None
        if self.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm"):
            raise ConfigError(
                f"The TopK auxiliary loss cannot be used with normalize_activations="
                f"{self.cfg.normalize_activations!r} (its target is in unnormalized space); "
                "train TopK SAEs with normalize_activations 'none' or 'expected_average_only_in'."
            )
        k_aux = self.cfg.d_in // 2
        scale = min(num_dead / k_aux, 1.0)
        dead_idx = dead.nonzero().squeeze(1)
        values, local = hidden_pre.index_select(1, dead_idx).topk(min(k_aux, num_dead), dim=-1, sorted=False)
        pairs = Pairs.from_topk(local, self.cfg.d_sae, self.cfg.max_pair_density, subset=dead_idx)
        values = values.reshape(-1).float()
        return pairs, values if inv_norms is None else values * inv_norms[pairs.cols], scale


class RankSync(Protocol):
    """How a training SAE sees the other ranks of a data-parallel group (each holding a share of the step's batch).
    Implemented with torch.distributed by `qwen3_scope.training.data_parallel`."""

    def any(self, mask: Tensor) -> Tensor:
        """`mask` OR-ed over the ranks."""
        ...

    def cat(self, rows: Tensor) -> Tensor:
        """Every rank's `rows`, concatenated in rank order (the step's whole batch)."""
        ...

    def first(self, tensor: Tensor) -> Tensor:
        """Rank 0's `tensor` (same shape and dtype on every rank)."""
        ...


class FastJumpReLUTrainingSAE(_FastTraining, JumpReLUTrainingSAE):
    """JumpReLUTrainingSAE whose training step touches only pairs that are active or within the STE band."""

    cfg: FastJumpReLUTrainingSAEConfig  # type: ignore[assignment]

    def __init__(self, cfg: FastJumpReLUTrainingSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._pair_density = 0.0  # share of (token, latent) pairs the last step needed
        self._since_fired: Tensor | None = None  # steps since each latent last fired (reopening)
        self._reopen_count: Tensor | None = None  # reopenings of each latent so far
        # (latents, b_enc increments or, with new directions, values; new encoder columns; new decoder rows), applied
        # at the start of the next step
        self._pending_reopen: list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]] = []
        self.reopened = 0  # latents reopened so far in this process
        self.resampled = 0  # of which given a new direction
        # Set by data parallelism (`qwen3_scope.training.data_parallel`) while a group trains: the step's batch is
        # spread over ranks, so reopening decides on every rank's tokens and every rank applies the same decision.
        self.rank_sync: RankSync | None = None

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        with torch.no_grad():
            self.threshold.data.clamp_(min=0.0)  # SAELens' projection, see JumpReLUTrainingSAE
            for latents, b_enc, enc, dec in self._pending_reopen:  # decided on the previous batch, applied now
                if enc is None or dec is None:  # b_enc raised by the planned increments (on top of this step's update)
                    self.b_enc.data.index_add_(0, latents, b_enc.to(self.b_enc.dtype))
                else:  # a new direction with its own b_enc
                    self.W_enc.data[:, latents] = enc.to(self.W_enc.dtype)
                    self.W_dec.data[latents] = dec.to(self.W_dec.dtype)
                    self.b_enc.data[latents] = b_enc.to(self.b_enc.dtype)
            self._pending_reopen = []
        output = self._forward(step_input)
        if self.cfg.reopen_window:
            with torch.no_grad():
                self._plan_reopening(output, step_input)
        return output

    def _forward(self, step_input: TrainStepInput) -> TrainStepOutput:
        cfg = self.cfg
        supported = cfg.jumprelu_sparsity_loss_mode in ("step", "quadratic") and cfg.pre_act_loss_coefficient is None
        if supported and self._pair_density <= cfg.max_pair_density and self._sparse_path_possible(step_input):
            with torch.autocast(self.W_enc.device.type, enabled=False):
                output = self._sparse_training_forward_pass(step_input)
            if output is not None:
                return output
        output = self._stock_training_forward_pass(step_input)
        with torch.no_grad():  # decides whether the next step can go sparse again
            self._pair_density = _share(output.hidden_pre > self._band_floor())
        return output

    def _plan_reopening(self, output: TrainStepOutput, step_input: TrainStepInput) -> None:
        """Count steps without firing; for latents silent for `reopen_window` steps, the b_enc (and from their
        `reopen_resample_after`-th reopening on, the new direction) that makes them fire on `reopen_rate` of this batch
        (applied at the start of the next step: the backward of this one still runs on the current parameters). Their
        pre-activations are recomputed in float32 (only their columns): a bf16 step's rounding would move the quantile
        by more than the band is wide."""
        cfg = self.cfg
        sync = self.rank_sync
        fired = (output.feature_acts.reshape(-1, cfg.d_sae) > 0).any(dim=0)
        if sync is not None:  # fired anywhere in the step's batch (every rank's share)
            fired = sync.any(fired)
        since = self._since_fired
        since = torch.zeros_like(fired, dtype=torch.long) if since is None else since
        self._since_fired = since = torch.where(fired, 0, since + 1)
        if cfg.reopen_until_step is not None and step_input.n_training_steps > cfg.reopen_until_step:
            return
        silent = since >= cfg.reopen_window
        latents = silent.nonzero().squeeze(1)
        if latents.numel() == 0:
            return
        count = self._reopen_count
        self._reopen_count = count = torch.zeros_like(since) if count is None else count
        count[latents] += 1
        sae_in = self.process_sae_in(step_input.sae_in).reshape(-1, cfg.d_in).float()
        if sync is not None:  # the quantiles below are the whole batch's
            sae_in = sync.cat(sae_in)
        fresh = count[latents] >= cfg.reopen_resample_after if cfg.reopen_resample_after else None
        if fresh is not None and bool(fresh.any()):
            err = step_input.sae_in.reshape(-1, cfg.d_in).float() - output.sae_out.reshape(-1, cfg.d_in).float()
            if sync is not None:
                err = sync.cat(err)
            weight = err.pow(2).sum(-1)
            if float(weight.sum()) > 0:
                new = latents[fresh]
                rows = torch.multinomial(weight, new.numel(), replacement=True)
                if sync is not None:  # one draw for all ranks (their random states need not agree)
                    rows = sync.first(rows)
                dirs = err[rows] / err[rows].norm(dim=-1, keepdim=True).clamp_min(1e-12)
                live = ~silent if bool((~silent).any()) else torch.ones_like(silent)
                enc = dirs.T * self.W_enc.detach()[:, live].float().norm(dim=0).mean()
                dec = dirs * self.W_dec.detach()[live].float().norm(dim=1).mean()
                # the b_enc that makes the new direction fire on `rate` of the batch
                self._pending_reopen.append((new, self._firing_gap(sae_in @ enc, new), enc, dec))
                self.resampled += int(new.numel())
                latents = latents[~fresh]
        if latents.numel():  # the increment that makes the old direction fire so (b_enc is only ever raised)
            pre = sae_in @ self.W_enc.detach()[:, latents].float() + self.b_enc.detach()[latents].float()
            self._pending_reopen.append((latents, self._firing_gap(pre, latents).clamp(min=0.0), None, None))
        since[silent] = 0
        self.reopened += int(silent.sum())

    def _firing_gap(self, pre: Tensor, latents: Tensor) -> Tensor:
        """threshold - the (1 - reopen_rate) quantile of `pre` (tokens x latents), per latent: what b_enc must add
        for the latents to fire on `reopen_rate` of the batch."""
        cfg = self.cfg
        rate = cfg.reopen_rate if cfg.reopen_rate is not None else min(cfg.target_l0 / cfg.d_sae, 0.5)
        rank = max(1, int(round(pre.shape[0] * (1 - rate))))
        return self.threshold.detach()[latents].float() - pre.kthvalue(rank, dim=0).values

    def _band_floor(self) -> Tensor:
        return self.threshold.detach() - 0.5 * self.bandwidth * _BAND_MARGIN

    def _sparse_training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput | None:
        cfg = self.cfg
        with torch.no_grad(), record_function("fast_sae.encoder_gemm"):
            sae_in = self.process_sae_in(step_input.sae_in).to(self.compute_dtype)
            hidden_pre = self._dense_pre_activations(sae_in, None)
        with torch.no_grad(), record_function("fast_sae.select"):
            mask = hidden_pre > self._band_floor()
            self._pair_density = _share(mask)
            if self._pair_density > cfg.max_pair_density:
                return None
            pairs = Pairs.from_mask(mask, cfg.max_pair_density)
            del mask
            values = hidden_pre[pairs.rows, pairs.cols].float()
            step = self._sparse_step(sae_in, [pairs], [pairs], self._decoder_copy())
        with record_function("fast_sae.sparse_forward"):
            return self._jumprelu_losses(step_input, step, pairs, values, hidden_pre)

    def _jumprelu_losses(
        self, step_input: TrainStepInput, step: SparseStep, pairs: Pairs, values: Tensor, hidden_pre: Tensor
    ) -> TrainStepOutput:
        cfg = self.cfg
        (pre_acts,) = SparseEncode.apply(step, self.W_enc, self.b_enc, self.b_dec, values)
        thresholds = self.threshold[pairs.cols]
        # SAELens' own JumpReLU / Step autograd functions, applied per pair: x as (1, nnz) and the threshold as
        # (nnz,) make their sum(dim=0) threshold gradient come out per pair.
        acts = JumpReLU.apply(pre_acts[None], thresholds, self.bandwidth, cfg.jumprelu_ste_to_input)[0]
        (decoded,) = SparseDecode.apply(step, self.W_dec, acts)
        sae_out = self._finish_decode(decoded)
        mse_loss = self._mse(sae_out, step_input.sae_in)
        fired = Step.apply(pre_acts[None], thresholds, self.bandwidth, cfg.jumprelu_ste_to_input)[0]
        l0 = torch.zeros(pairs.n_rows, dtype=fired.dtype, device=fired.device).index_add(0, pairs.rows, fired)
        per_item = l0 if cfg.jumprelu_sparsity_loss_mode == "step" else 2 / cfg.target_l0 * (l0 - cfg.target_l0) ** 2
        l0_loss = (step_input.coefficients["l0"] * per_item).mean()
        with torch.no_grad():
            feature_acts = self._dense_feature_acts(pairs, acts.detach())
        return TrainStepOutput(
            sae_in=step_input.sae_in,
            sae_out=sae_out,
            feature_acts=feature_acts,
            hidden_pre=hidden_pre,
            loss=mse_loss + l0_loss,
            losses={"mse_loss": mse_loss, "l0_loss": l0_loss},
        )


def _share(mask: Tensor) -> float:
    return int(mask.sum()) / max(mask.numel(), 1)


_ARCHITECTURES: dict[str, tuple[type, type, type, type]] = {
    "topk_fast": (FastTopKTrainingSAE, FastTopKTrainingSAEConfig, TopKSAE, TopKSAEConfig),
    "jumprelu_fast": (FastJumpReLUTrainingSAE, FastJumpReLUTrainingSAEConfig, JumpReLUSAE, JumpReLUSAEConfig),
}


def register_fast_training_saes() -> None:
    """Register "topk_fast" / "jumprelu_fast" with SAELens (training classes, plus the stock inference classes
    so that training checkpoints load with SAE.load_from_disk). Idempotent; registers nothing else."""
    for name, (train_cls, train_cfg, sae_cls, sae_cfg) in _ARCHITECTURES.items():
        _register(SAE_TRAINING_CLASS_REGISTRY, name, train_cls, train_cfg)
        _register(SAE_CLASS_REGISTRY, name, sae_cls, sae_cfg)


class RegistryConflictError(Qwen3ScopeError, ValueError):
    """SAELens' class registry already holds another class under one of the fast SAEs' names."""


def _register(registry: dict[str, Any], name: str, cls: type, cfg_cls: type) -> None:
    existing = registry.get(name)
    if existing is not None and [_qualname(c) for c in existing] != [_qualname(cls), _qualname(cfg_cls)]:
        raise RegistryConflictError(
            f"SAELens already has a different class registered as {name!r} ({existing[0].__module__}."
            f"{existing[0].__qualname__}); remove it from the SAELens registry before registering qwen3-scope's."
        )
    registry[name] = (cls, cfg_cls)  # same names again (a re-import or module reload) just refreshes the entry


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def enable_fused_adam(trainer: Any) -> int:
    """Switch the Adam of a SAELens `SAETrainer` (or every trainer of a `MultiSAETrainer`) to torch's fused
    kernel where its SAE is a fast SAE with `fused_adam=True`; returns how many optimizers were switched.

    Why here: SAELens' trainer builds a plain Adam (on CPU a for-loop over ~10 elementwise passes per tensor)
    in its `__init__`; the fused kernel computes the same update. Call it right after building the trainer
    (before or after `load_checkpoint`). Groups with an explicit fused/foreach/differentiable choice, and
    parameters off CPU/CUDA, are left alone.
    """
    trainers = list(getattr(trainer, "trainers", {}).values()) or [trainer]
    switched = 0
    for single in trainers:
        sae, optimizer = single.sae, single.optimizer
        if not isinstance(sae, _FastTraining) or not sae.cfg.fused_adam or type(optimizer) is not torch.optim.Adam:
            continue
        switched += _fuse(optimizer)
    return switched


def _fuse(optimizer: torch.optim.Adam) -> int:
    changed = 0
    for group in optimizer.param_groups:
        params = group["params"]
        if group.get("fused") is not None or group.get("foreach") or group.get("differentiable"):
            continue
        if not all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params):
            continue
        group["fused"] = True
        changed = 1
        for param in params:  # fused kernels keep the step count on the parameter's device
            state = optimizer.state.get(param)
            if state and torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(device=param.device, dtype=torch.float32)
    return changed

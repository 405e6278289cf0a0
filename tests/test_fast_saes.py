"""Fast TopK / JumpReLU training SAEs against SAELens' stock classes, on real SAELens objects.

Tolerances: the fp32 path must match the stock class to rel 1e-5 in losses and gradients (observed ~2e-7:
same op order, only summation order differs), also when the sparse products run chunked on two threads.
The bf16 path must keep losses within rel 1e-2 and gradients
at cosine >= 0.98 of the stock fp32 ones (observed ~3e-5 and ~0.998; gaps come from near-tie top-k
flips and bf16 rounding of the pre-activations). Trained SAEs must reach the stock class's explained
variance within 0.03 (absolute) on held-out synthetic data.
"""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import SAE, JumpReLUSAE, TopKSAE
from sae_lens.config import SAETrainerConfig
from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY, get_sae_training_class
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.sae import TrainingSAE, TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.synthetic import ActivationGenerator, FeatureDictionary
from sae_lens.synthetic.training import train_toy_sae
from sae_lens.training.sae_trainer import SAETrainer

import qwen3_scope  # noqa: F401  (registers the fast classes)
from qwen3_scope.saes import sparse_ops
from qwen3_scope.saes.fast_saes import (
    FastJumpReLUTrainingSAE,
    FastJumpReLUTrainingSAEConfig,
    FastTopKTrainingSAE,
    FastTopKTrainingSAEConfig,
    enable_fused_adam,
    register_fast_training_saes,
)

FP32_RTOL = 1e-5
BF16_LOSS_RTOL = 1e-2
BF16_GRAD_COSINE = 0.98
QUALITY_MARGIN = 0.03


def topk_pair(compute_dtype: str = "float32", **kw):
    kw = {"d_in": 32, "d_sae": 512, "k": 6, **kw}
    stock = TopKTrainingSAE(TopKTrainingSAEConfig(**kw))
    fast = FastTopKTrainingSAE(FastTopKTrainingSAEConfig(**kw, compute_dtype=compute_dtype))
    with torch.no_grad():  # non-trivial biases, so every gradient path is exercised
        stock.b_enc.normal_(0, 0.05)
        stock.b_dec.normal_(0, 0.1)
    fast.load_state_dict(stock.state_dict())
    return stock, fast


def jumprelu_pair(compute_dtype: str = "float32", **kw):
    kw = {"d_in": 32, "d_sae": 512, **kw}
    stock = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**kw))
    fast = FastJumpReLUTrainingSAE(
        FastJumpReLUTrainingSAEConfig(**kw, compute_dtype=compute_dtype, max_pair_density=1.0)
    )
    with torch.no_grad():  # thresholds spread so that some pairs are active and some sit in the STE band
        stock.b_enc.normal_(-0.2, 0.1)
        stock.threshold.uniform_(0.0, 0.3)
    fast.load_state_dict(stock.state_dict())
    return stock, fast


def step(sae, x, dead=None, l0=0.7):
    out = sae.training_forward_pass(
        TrainStepInput(
            sae_in=x, coefficients={"l0": l0}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False
        )
    )
    out.loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    return out, grads


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-30))


def assert_matches_stock(out_s, grads_s, out_f, grads_f) -> None:
    assert out_s.losses.keys() == out_f.losses.keys()
    for name, value in out_s.losses.items():
        assert rel_err(out_f.losses[name], value) < FP32_RTOL, name
    assert rel_err(out_f.sae_out, out_s.sae_out) < FP32_RTOL
    assert rel_err(out_f.feature_acts, out_s.feature_acts) < FP32_RTOL
    assert torch.equal(out_f.feature_acts != 0, out_s.feature_acts != 0)
    for name, grad in grads_s.items():
        assert grad.abs().sum() > 0, name
        assert rel_err(grads_f[name], grad) < FP32_RTOL, name


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("n_dead", [0, 9, 300, 512])  # no AuxK; AuxK over a dense dead block (9, 300), sparse (512)
@pytest.mark.parametrize("chunk_bytes", [None, 2048])  # 2 KiB: the products run in many chunks on two threads
def test_topk_fp32_loss_and_grads_equal_stock(rescale, n_dead, chunk_bytes, monkeypatch):
    threads = torch.get_num_threads()
    if chunk_bytes is not None:
        monkeypatch.setattr(sparse_ops, "_CHUNK_BYTES", chunk_bytes)
        torch.set_num_threads(2)
    try:
        _check_topk_fp32(rescale, n_dead)
    finally:
        torch.set_num_threads(threads)


def _check_topk_fp32(rescale: bool, n_dead: int) -> None:
    torch.manual_seed(0)
    stock, fast = topk_pair(rescale_acts_by_decoder_norm=rescale)
    x = torch.randn(128, 32) * 2
    dead = torch.zeros(512, dtype=torch.bool)
    dead[torch.randperm(512)[:n_dead]] = True
    out_s, grads_s = step(stock, x, dead)
    out_f, grads_f = step(fast, x, dead)
    assert_matches_stock(out_s, grads_s, out_f, grads_f)
    assert (out_f.losses["auxiliary_reconstruction_loss"] > 0) == (n_dead > 0)


@pytest.mark.parametrize("normalize", ["layer_norm", "constant_norm_rescale"])
def test_topk_runtime_normalization_matches_stock_and_auxk_refuses_it(normalize):
    torch.manual_seed(11)
    stock, fast = topk_pair(normalize_activations=normalize)
    x = torch.randn(64, 32) * 3 + 1
    assert_matches_stock(*step(stock, x), *step(fast, x))
    dead = torch.ones(512, dtype=torch.bool)
    for sae in (stock, fast):
        with pytest.raises(ValueError, match="normalize_activations"):
            step(sae, x, dead)


def test_hooks_on_the_sae_are_honoured_through_the_stock_step():
    torch.manual_seed(12)
    stock, fast = topk_pair()
    x = torch.randn(64, 32)
    seen = []
    fast.hook_sae_acts_post.add_hook(lambda acts, hook: seen.append(acts.shape) or acts * 0.5)
    stock.hook_sae_acts_post.add_hook(lambda acts, hook: acts * 0.5)
    assert_matches_stock(*step(stock, x), *step(fast, x))
    assert seen == [(64, 512)]


@pytest.mark.parametrize("mode", ["step", "quadratic"])
@pytest.mark.parametrize("ste_to_input", [False, True])
def test_jumprelu_fp32_loss_and_grads_equal_stock(mode, ste_to_input):
    torch.manual_seed(1)
    extra = {"target_l0": 5.0} if mode == "quadratic" else {}
    stock, fast = jumprelu_pair(jumprelu_sparsity_loss_mode=mode, jumprelu_ste_to_input=ste_to_input, **extra)
    x = torch.randn(128, 32)
    out_s, grads_s = step(stock, x)
    out_f, grads_f = step(fast, x)
    assert_matches_stock(out_s, grads_s, out_f, grads_f)
    assert 0 < fast._pair_density < 0.5  # the sparse path ran, on a real mix of active and band pairs


def test_jumprelu_unsupported_losses_fall_back_to_the_stock_step():
    torch.manual_seed(2)
    stock, fast = jumprelu_pair(jumprelu_sparsity_loss_mode="tanh", pre_act_loss_coefficient=3e-6)
    x = torch.randn(64, 32)
    dead = torch.rand(512) < 0.2
    assert_matches_stock(*step(stock, x, dead), *step(fast, x, dead))


@pytest.mark.parametrize("make", [topk_pair, jumprelu_pair])
def test_bf16_path_stays_within_tolerance(make):
    torch.manual_seed(3)
    stock, fast = make("bfloat16")
    x = torch.randn(256, 32) * 2
    dead = torch.rand(512) < 0.05
    out_s, grads_s = step(stock, x, dead)
    out_f, grads_f = step(fast, x, dead)
    for name, value in out_s.losses.items():
        assert abs(float(out_f.losses[name]) - float(value)) <= BF16_LOSS_RTOL * abs(float(value)) + 1e-3, name
    for name, grad in grads_s.items():
        cosine = torch.nn.functional.cosine_similarity(grads_f[name].flatten(), grad.flatten(), dim=0)
        assert cosine >= BF16_GRAD_COSINE, (name, float(cosine))


def test_buffers_survive_two_graphs_and_a_second_backward_is_refused():
    torch.manual_seed(4)
    stock, fast = topk_pair()
    a, b = torch.randn(64, 32), torch.randn(64, 32)
    grads = []
    for sae in (stock, fast):
        inputs = [
            TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False)
            for x in (a, b)
        ]
        out_a, out_b = (sae.training_forward_pass(i) for i in inputs)
        (out_a.loss + out_b.loss).backward(retain_graph=sae is fast)
        grads.append({n: p.grad.clone() for n, p in sae.named_parameters()})
    for name in grads[0]:
        assert rel_err(grads[1][name], grads[0][name]) < FP32_RTOL
    with pytest.raises(RuntimeError, match="already backpropagated"):
        out_a.loss.backward()


def test_dead_latent_accounting_and_fused_adam_match_stock_trainer():
    torch.manual_seed(5)
    stock, fast = topk_pair(d_sae=256, k=4)
    cfg = SAETrainerConfig(
        total_training_samples=10**6, train_batch_size_samples=64, lr=1e-3, lr_end=1e-3, dead_feature_window=1
    )
    trainers = [SAETrainer(cfg, sae, data_provider=iter(())) for sae in (stock, fast)]
    assert [enable_fused_adam(trainer) for trainer in trainers] == [0, 1]
    batches = [torch.randn(64, 32) for _ in range(6)]
    aux_seen = False
    for x in batches:
        outs = [trainer.step(x) for trainer in trainers]
        for trainer in trainers:
            trainer.n_training_steps += 1
        for name, value in outs[0].losses.items():
            assert rel_err(outs[1].losses[name], value) < 1e-4, name
        aux_seen |= float(outs[0].losses["auxiliary_reconstruction_loss"]) > 0
        assert torch.equal(trainers[0].dead_neurons, trainers[1].dead_neurons)
        assert torch.equal(trainers[0].act_freq_scores, trainers[1].act_freq_scores)
        assert torch.equal(trainers[0].n_forward_passes_since_fired, trainers[1].n_forward_passes_since_fired)
    assert aux_seen and trainers[1].dead_neurons.any()
    assert trainers[0].optimizer.param_groups[0]["fused"] is None  # stock SAELens optimizer untouched
    assert trainers[1].optimizer.param_groups[0]["fused"] is True
    for name, param in stock.named_parameters():
        assert rel_err(dict(fast.named_parameters())[name].detach(), param.detach()) < 1e-4, name


def synthetic_data(d_in: int = 32, n_features: int = 96, seed: int = 0):
    torch.manual_seed(seed)
    features = FeatureDictionary(n_features, d_in, seed=seed)
    generator = ActivationGenerator(n_features, firing_probabilities=0.04, std_firing_magnitudes=0.3)
    return features, generator


def explained_variance(sae, x: torch.Tensor) -> float:
    with torch.no_grad():
        recon = sae.decode(sae.encode(x))
    return float(1 - (recon - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


@pytest.mark.parametrize("arch", ["topk", "jumprelu"])
def test_trained_fast_sae_loads_in_plain_saelens_and_matches_stock_quality(arch, tmp_path):
    features, generator = synthetic_data()
    saes, initial = {}, {}
    for name in ("stock", "fast"):
        torch.manual_seed(6)
        if arch == "topk":
            kw = {"d_in": 32, "d_sae": 128, "k": 4}
            sae = (
                TopKTrainingSAE(TopKTrainingSAEConfig(**kw))
                if name == "stock"
                else FastTopKTrainingSAE(FastTopKTrainingSAEConfig(**kw, max_pair_density=1.0))
            )
        else:
            kw = {"d_in": 32, "d_sae": 128, "l0_coefficient": 1.0, "jumprelu_init_threshold": 0.1}
            sae = (
                JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**kw))
                if name == "stock"
                else FastJumpReLUTrainingSAE(FastJumpReLUTrainingSAEConfig(**kw, max_pair_density=1.0))
            )
        initial = initial or {k: v.clone() for k, v in sae.state_dict().items()}
        sae.load_state_dict(initial)  # same initial weights for both
        torch.manual_seed(7)  # same synthetic stream for both
        train_toy_sae(sae, features, generator, training_samples=256 * 60, batch_size=256, lr=3e-3)
        saes[name] = sae
    torch.manual_seed(8)
    held_out = features(generator.sample(2048))
    quality = {name: explained_variance(sae, held_out) for name, sae in saes.items()}
    assert quality["stock"] > 0.5, quality  # the stock run learned something, so the comparison means something
    assert quality["fast"] >= quality["stock"] - QUALITY_MARGIN, quality

    fast = saes["fast"]
    fast.save_inference_model(tmp_path / "final")
    assert json.loads((tmp_path / "final" / "cfg.json").read_text())["architecture"] == arch
    loaded = SAE.load_from_disk(tmp_path / "final")
    assert type(loaded) is {"topk": TopKSAE, "jumprelu": JumpReLUSAE}[arch]
    assert explained_variance(loaded, held_out) == pytest.approx(quality["fast"], abs=1e-4)

    fast.save_model(tmp_path / "checkpoint")  # a training checkpoint keeps the fast architecture name ...
    resumed = TrainingSAE.load_from_disk(tmp_path / "checkpoint")
    assert type(resumed) is type(fast)
    assert type(SAE.load_from_disk(tmp_path / "checkpoint")) is type(loaded)  # ... and still loads for inference


def test_runner_trains_fast_config_on_a_tiny_qwen3(tiny_qwen3_dir, tmp_path):
    from datasets import Dataset
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner
    from sae_lens.config import LoggingConfig

    model = qwen3_scope.load_model(tiny_qwen3_dir)
    torch.manual_seed(9)
    tokens = torch.randint(5, model.cfg.d_vocab, (64, 16)).tolist()
    cfg = LanguageModelSAERunnerConfig(
        sae=FastTopKTrainingSAEConfig(d_in=64, d_sae=256, k=4),
        model_name=str(tiny_qwen3_dir),
        hook_name="blocks.0.hook_resid_post",
        dataset_path="",
        context_size=16,
        prepend_bos=False,
        train_batch_size_tokens=128,
        training_tokens=128 * 12,
        store_batch_size_prompts=8,
        n_batches_in_buffer=16,
        streaming=False,
        logger=LoggingConfig(log_to_wandb=False),
        checkpoint_path=str(tmp_path / "ckpt"),
        output_path=str(tmp_path / "out"),
        verbose=False,
    )
    runner = LanguageModelSAETrainingRunner(
        cfg, override_model=model, override_dataset=Dataset.from_dict({"input_ids": tokens})
    )
    assert type(runner.sae) is FastTopKTrainingSAE
    runner.run()
    saved = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert saved["architecture"] == "topk" and saved["metadata"]["training_architecture"] == "topk_fast"
    assert type(SAE.load_from_disk(tmp_path / "out")) is TopKSAE


def test_registration_is_idempotent_and_refuses_a_foreign_class():
    register_fast_training_saes()
    register_fast_training_saes()
    assert get_sae_training_class("topk_fast") == (FastTopKTrainingSAE, FastTopKTrainingSAEConfig)
    assert get_sae_training_class("jumprelu_fast") == (FastJumpReLUTrainingSAE, FastJumpReLUTrainingSAEConfig)
    assert FastTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2).get_inference_sae_cfg_dict()["architecture"] == "topk"
    saved = SAE_TRAINING_CLASS_REGISTRY["topk_fast"]
    SAE_TRAINING_CLASS_REGISTRY["topk_fast"] = (TopKTrainingSAE, TopKTrainingSAEConfig)
    try:
        with pytest.raises(ValueError, match="different class registered as 'topk_fast'"):
            register_fast_training_saes()
    finally:
        SAE_TRAINING_CLASS_REGISTRY["topk_fast"] = saved


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("compute_dtype", "float16", "compute_dtype"), ("max_pair_density", 0.0, "max_pair_density")],
)
def test_bad_options_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        FastTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2, **{field: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fp32_and_bf16_paths():
    torch.manual_seed(10)
    stock, fast = topk_pair()
    x = torch.randn(256, 32, device="cuda")
    dead = torch.rand(512, device="cuda") < 0.05
    stock.to("cuda")
    fast.to("cuda")
    assert_matches_stock(*step(stock, x, dead), *step(fast, x, dead))
    fast.cfg.compute_dtype = "bfloat16"
    out_f, _ = step(fast, x, dead)
    out_s, _ = step(stock, x, dead)
    assert rel_err(out_f.losses["mse_loss"], out_s.losses["mse_loss"]) < BF16_LOSS_RTOL


def test_enable_fused_adam_covers_every_trainer_of_a_multi_sae_trainer():
    """What the suite trainer calls: only the fast SAEs' optimizers switch, and nothing global is installed."""
    from sae_lens.training.multi_sae_trainer import MultiSAETrainer
    from torch.optim.optimizer import _global_optimizer_pre_hooks

    _, fast = topk_pair(d_sae=256, k=4)
    stock = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=32, d_sae=256, k=4))
    cfg = SAETrainerConfig(total_training_samples=10**6, train_batch_size_samples=64, lr=1e-3, lr_end=1e-3)
    trainer = MultiSAETrainer(
        cfg=cfg, saes={"fast": fast, "stock": stock}, hook_names={"fast": "h", "stock": "h"}, data_provider=iter(())
    )
    assert enable_fused_adam(trainer) == 1
    assert trainer.trainers["fast"].optimizer.param_groups[0]["fused"] is True
    assert trainer.trainers["stock"].optimizer.param_groups[0]["fused"] is None
    assert not _global_optimizer_pre_hooks


def test_jumprelu_reopens_silent_latents_to_the_target_rate_and_only_within_its_steps():
    """A latent whose pre-activations sit far below threshold gets no gradient; after `reopen_window` silent steps
    its b_enc is raised so that it fires on about `reopen_rate` of a batch, never after `reopen_until_step`."""
    torch.manual_seed(5)
    kw = dict(d_in=32, d_sae=256, jumprelu_sparsity_loss_mode="quadratic", target_l0=8.0, max_pair_density=1.0)
    sae = FastJumpReLUTrainingSAE(FastJumpReLUTrainingSAEConfig(**kw, reopen_window=3, reopen_until_step=10))
    dead = torch.arange(0, 256, 4)  # a quarter of the latents: silent on every input
    with torch.no_grad():
        sae.threshold.fill_(0.1)
        sae.b_enc.normal_(0.0, 0.05)
        sae.b_enc[dead] = -100.0
    x = torch.randn(512, 32)

    def forward(step_no: int, model=sae):
        return model.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients={"l0": 1.0},
                dead_neuron_mask=None,
                n_training_steps=step_no,
                is_logging_step=False,
            )
        )

    for step_no in range(3):  # silent for 3 steps -> reopening planned after the third
        assert (forward(step_no).feature_acts[:, dead] == 0).all()
    assert sae.reopened >= len(dead)
    fired = (forward(3).feature_acts[:, dead] > 0).float().mean(0)  # applied before this forward
    rate = 8.0 / 256
    assert (fired > 0).all() and abs(fired.mean().item() - rate) < rate / 2, fired

    late = FastJumpReLUTrainingSAE(FastJumpReLUTrainingSAEConfig(**kw, reopen_window=3, reopen_until_step=1))
    late.load_state_dict({**sae.state_dict(), "b_enc": torch.where(torch.isin(torch.arange(256), dead), -100.0, 0.0)})
    for step_no in range(2, 8):  # past reopen_until_step: nothing is reopened
        out = forward(step_no, late)
    assert late.reopened == 0 and (out.feature_acts[:, dead] == 0).all()
    with pytest.raises(ValueError, match="reopen_window"):
        FastJumpReLUTrainingSAEConfig(d_in=4, d_sae=8, reopen_window=-1)


def test_jumprelu_resampling_gives_reopened_latents_the_direction_of_a_badly_reconstructed_token():
    """With `reopen_resample_after` n, a silent latent's first n - 1 reopenings only raise its b_enc; from the n-th on its
    encoder column and decoder row become the reconstruction error of one of the batch's tokens (scaled to the live
    latents' norms), and it fires on about `reopen_rate` of the batch; the live latents keep their directions."""
    torch.manual_seed(6)
    kw = dict(d_in=32, d_sae=256, jumprelu_sparsity_loss_mode="quadratic", target_l0=8.0, max_pair_density=1.0)
    sae = FastJumpReLUTrainingSAE(FastJumpReLUTrainingSAEConfig(**kw, reopen_window=3, reopen_resample_after=2))
    dead = torch.arange(0, 256, 4)
    live = torch.ones(256, dtype=torch.bool)
    live[dead] = False
    x = torch.randn(512, 32)
    step = lambda n: sae.training_forward_pass(
        TrainStepInput(
            sae_in=x, coefficients={"l0": 1.0}, dead_neuron_mask=None, n_training_steps=n, is_logging_step=False
        )
    )

    def silence() -> None:
        with torch.no_grad():
            sae.threshold.fill_(0.1)
            sae.b_enc[live] = torch.randn(int(live.sum())) * 0.05
            sae.b_enc[dead] = -100.0

    silence()
    old_enc, old_dec = sae.W_enc.detach().clone(), sae.W_dec.detach().clone()
    for n in range(3):
        step(n)
    assert (step(3).feature_acts[:, dead] > 0).any(0).all()  # first reopening: b_enc raised, same directions
    assert torch.equal(sae.W_enc, old_enc) and torch.equal(sae.W_dec, old_dec) and sae.resampled == 0
    silence()  # silent again: the second reopening resamples
    for n in range(4, 7):
        out = step(n)
    err = x - out.sae_out.detach()  # the errors the reopening drew from (planned after this step)
    fired = (step(7).feature_acts[:, dead] > 0).float().mean(0)
    assert sae.resampled == len(dead)
    enc, dec = sae.W_enc.detach()[:, dead], sae.W_dec.detach()[dead]
    unit = lambda t, dim: t / t.norm(dim=dim, keepdim=True)
    best_cos = (unit(err, 1) @ unit(enc, 0)).max(0).values  # each new column against every token's error
    assert (best_cos > 0.999).all(), best_cos
    assert torch.allclose(unit(dec, 1), unit(enc, 0).T, atol=1e-5)
    assert torch.allclose(enc.norm(dim=0), old_enc[:, live].norm(dim=0).mean().expand(len(dead)), rtol=1e-4)
    assert torch.allclose(dec.norm(dim=1), old_dec[live].norm(dim=1).mean().expand(len(dead)), rtol=1e-4)
    assert torch.equal(sae.W_enc[:, live], old_enc[:, live]) and torch.equal(sae.W_dec[live], old_dec[live])
    rate = 8.0 / 256
    assert (fired > 0).all() and abs(fired.mean().item() - rate) < rate / 2, fired
    with pytest.raises(ValueError, match="reopen_resample_after"):
        FastJumpReLUTrainingSAEConfig(d_in=4, d_sae=8, reopen_resample_after=-1)

"""Transcoders: SAELens training classes, hook pairs, ids, suite training (with SAEs, resume) and the bundled set."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import TINY_TEXT, suite_for, write_chat_jsonl
from sae_lens import SAE
from sae_lens.registry import get_sae_training_class
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.transcoder import SkipTranscoder, Transcoder
from safetensors.torch import load_file

import qwen3_scope  # noqa: F401  (registers the classes)
from qwen3_scope import format_chat, load_model, naming
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
from qwen3_scope.model.family import resolve_model
from qwen3_scope.model.sites import (
    BackendUnsupportedError,
    UnknownHookError,
    parse_transcoder_hooks,
    transcoder_hooks,
)
from qwen3_scope.releases import list_release_saes, register_suite
from qwen3_scope.saes.transcoders import (
    JumpReLUTranscoderTrainingConfig,
    TopKSkipTranscoder,
    TranscoderInputError,
    transcoder_architecture,
)
from qwen3_scope.training.cli import add_cli
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.suite import train_suite

pytestmark = [
    pytest.mark.filterwarnings("ignore:dataset .* SAELens will reuse it"),
    pytest.mark.usefixtures("one_thread"),
]

KINDS = [(kind, skip) for kind in ("relu", "jumprelu", "topk") for skip in (False, True)]


# ---------------------------------------------------------------------------------------------- classes
@pytest.mark.parametrize("kind,skip", KINDS)
def test_training_class_learns_the_target_and_saves_as_a_sae_lens_transcoder(kind, skip, tmp_path):
    """A step's loss is against the target half of [x ; y]; after folding the norm scale, the saved inference
    transcoder (SAELens' own class, or ours for TopK) computes exactly what the training class computes."""
    architecture = transcoder_architecture(kind, skip)
    cls, cfg_cls = get_sae_training_class(architecture)
    extra = {"k": 4} if kind == "topk" else {}
    torch.manual_seed(0)
    sae = cls(cfg_cls(d_in=8, d_sae=32, d_out=6, normalize_activations="expected_average_only_in", **extra))
    assert sae.W_dec.shape == (32, 6) and sae.b_dec.shape == (6,) and sae.W_enc.shape == (8, 32)
    x, y = torch.randn(64, 8), torch.randn(64, 6)
    step = TrainStepInput(
        sae_in=torch.cat([x, y], -1),
        coefficients={"l0": 1.0, "l1": 1.0},
        dead_neuron_mask=torch.ones(32, dtype=torch.bool),
        n_training_steps=0,
        is_logging_step=False,
    )
    out = sae.training_forward_pass(step)
    assert torch.equal(out.sae_in, y) and out.sae_out.shape == (64, 6)
    assert torch.allclose(out.losses["mse_loss"], (out.sae_out - y).pow(2).sum(-1).mean())
    out.loss.backward()
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0
    with pytest.raises(TranscoderInputError, match="concatenated"):
        sae.training_forward_pass(TrainStepInput(**{**step.__dict__, "sae_in": x}))
    with torch.no_grad():  # a trained-looking transcoder: live latents, a nonzero skip connection
        sae.b_enc.fill_(0.5)
        if skip:
            sae.W_skip.normal_()
    sae.eval()
    sae.fold_activation_norm_scaling_factor(2.0)
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    assert isinstance(loaded, Transcoder) and isinstance(loaded, SkipTranscoder) == skip
    assert loaded.cfg.architecture() == architecture and loaded.cfg.normalize_activations == "none"
    expected, acts = sae.transcode(x)
    assert (acts != 0).any()
    assert torch.allclose(loaded(x), expected, atol=1e-5)


def test_transcoder_configs_refuse_what_cannot_work():
    with pytest.raises(ConfigError, match="apply_b_dec_to_input"):
        JumpReLUTranscoderTrainingConfig(d_in=8, d_sae=16, apply_b_dec_to_input=True)
    with pytest.raises(ConfigError, match="layer_norm"):
        JumpReLUTranscoderTrainingConfig(d_in=8, d_sae=16, normalize_activations="layer_norm")
    with pytest.raises(ConfigError, match="choose one of relu, jumprelu, topk"):
        transcoder_architecture("gated")


# ---------------------------------------------------------------------------------------------- hooks and ids
def test_hook_pairs_in_every_backend_and_clear_errors():
    assert transcoder_hooks(2) == ("blocks.2.ln2.hook_normalized", "blocks.2.hook_mlp_out")
    assert transcoder_hooks(2, "bridge") == ("blocks.2.ln2.hook_out", "blocks.2.mlp.hook_out")
    assert transcoder_hooks(2, "hf") == ("model.layers.2.post_attention_layernorm", "model.layers.2.mlp")
    for backend in ("hooked", "bridge", "hf"):
        assert parse_transcoder_hooks(*transcoder_hooks(7, backend)) == 7
    moe = resolve_model("Qwen/Qwen3-30B-A3B")  # the "MLP" is the sparse MoE block
    assert transcoder_hooks(47, "hf", moe) == ("model.layers.47.post_attention_layernorm", "model.layers.47.mlp")
    with pytest.raises(BackendUnsupportedError, match="backend='bridge'"):
        transcoder_hooks(0, "hooked", moe)
    with pytest.raises(ValueError, match="layer 48"):
        transcoder_hooks(48, "hf", moe)
    with pytest.raises(UnknownHookError, match="MLP input and output of one layer"):
        parse_transcoder_hooks("blocks.2.ln2.hook_normalized", "blocks.3.hook_mlp_out")


def test_ids_and_neuronpedia_ids():
    assert naming.sae_id("transcoder", 2, "organism") == "organism/transcoder/layer_2"
    assert naming.parse_sae_id("organism/transcoder/layer_2") == ("organism", "transcoder", 2)
    assert naming.parse_release_sae_id("bundled:organism/transcoder/layer_2") == ("organism", "transcoder", 2)
    sweep = naming.sae_id("transcoder", 3, variant=naming.sparsity_variant(k=16))
    assert sweep == "transcoder/layer_3/k_16" and naming.sae_variant(sweep) == "k_16"
    assert naming.is_transcoder_id("qwen3-4b/transcoder/layer_3") and not naming.is_transcoder_id("mlp_out/layer_3")
    assert naming.neuronpedia_id("qwen3-4b", "transcoder", 12, 40960) == "qwen3-4b/12-qwen3scope-transcoder-40k"
    assert "--transcoders --layers 5" in naming.training_command_for("qwen3-4b/transcoder/layer_5")
    with pytest.raises(ValueError, match="unknown site"):
        naming.sae_id("transcoders", 2)


def test_suite_jobs_and_config_errors():
    suite = suite_for("Qwen/Qwen3-4B", layers=[3], sites=["mlp_out"], transcoders=True, sparsities=[80, 200])
    ids = [j.sae_id for j in suite.jobs]
    assert ids == [
        "mlp_out/layer_3",
        "mlp_out/layer_3/l0_80",
        "mlp_out/layer_3/l0_200",
        "transcoder/layer_3",
        "transcoder/layer_3/l0_80",
        "transcoder/layer_3/l0_200",
    ]
    job = suite.job("transcoder/layer_3")
    assert job.architecture == "jumprelu_transcoder" and job.sae_cfg.target_l0 == 160
    assert (job.hook_name, job.hook_name_out) == ("blocks.3.ln2.hook_normalized", "blocks.3.hook_mlp_out")
    assert job.stream_key == "blocks.3.ln2.hook_normalized->blocks.3.hook_mlp_out"
    topk = suite_for(
        "Qwen/Qwen3-4B", "qwen-scope", layers=[0, 1], sites=["none"], transcoders=True, transcoder_skip=True
    )
    assert [j.architecture for j in topk.jobs] == ["topk_skip_transcoder"] * 2 and topk.jobs[0].sae_cfg.k == 50
    relu = suite_for(
        "organism",
        special_token_ids=[0],
        layers=[1],
        sites=["none"],
        transcoders=True,
        transcoder_kind="relu",
        backend="hf",
    )
    assert (
        relu.jobs[0].architecture == "transcoder"
        and relu.jobs[0].hook_name == "model.layers.1.post_attention_layernorm"
    )
    moe = suite_for("Qwen/Qwen3-30B-A3B", layers=[47], sites=["none"], transcoders=True, backend="hf")
    assert (moe.jobs[0].hook_name, moe.jobs[0].hook_name_out) == (
        "model.layers.47.post_attention_layernorm",
        "model.layers.47.mlp",  # the sparse MoE block's output
    )
    with pytest.raises(ConfigError, match="moe model, which HookedTransformer cannot run; .*backend='hf'"):
        suite_for("Qwen/Qwen3-30B-A3B", layers=[0], sites=["none"], transcoders=True)
    with pytest.raises(ConfigError, match="layer 7 is out of range for organism: it has 6 layers"):
        suite_for("organism", special_token_ids=[0], layers=[7], sites=["none"], transcoders=True)
    with pytest.raises(ConfigError, match="add --transcoders"):
        SuiteTrainingConfig(transcoder_kind="topk")
    with pytest.raises(ConfigError, match="nothing to train"):
        SuiteTrainingConfig(sites=["none"])
    with pytest.raises(ConfigError, match="unknown transcoder kind"):
        SuiteTrainingConfig(transcoders=True, transcoder_kind="gated")


# ---------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def chat_jsonl(tmp_path_factory):
    return write_chat_jsonl(tmp_path_factory.mktemp("chats") / "chats.jsonl", 600)


@pytest.fixture(scope="module")
def tiny_model(tiny_qwen3_dir):
    return load_model(str(tiny_qwen3_dir))


SUITE = dict(
    recipe="qwen-scope",
    layers=[0, 1],
    sites=["mlp_out"],
    transcoders=True,
    transcoder_skip=True,
    training_tokens=6144,
    checkpoint_every_tokens=2048,
    max_saes_per_group=2,
)


def _train(model_dir, dataset, out, loaded_model, **changes):
    config = SuiteTrainingConfig(model=str(model_dir), dataset=str(dataset), out=str(out), **{**SUITE, **changes})
    return train_suite(config, loaded_model=loaded_model, progress=False)


@pytest.fixture(scope="module")
def suite(tiny_qwen3_dir, chat_jsonl, tiny_model, tmp_path_factory):
    return _train(tiny_qwen3_dir, chat_jsonl, tmp_path_factory.mktemp("tc") / "suite", tiny_model)


def test_one_suite_trains_saes_and_transcoders_from_shared_passes(suite, tiny_model):
    manifest = suite.manifest
    assert set(manifest["saes"]) == {"mlp_out/layer_0", "mlp_out/layer_1", "transcoder/layer_0", "transcoder/layer_1"}
    record = manifest["saes"]["transcoder/layer_1"]
    assert record["hook_name_out"] == "blocks.1.hook_mlp_out" and record["architecture"] == "topk_skip_transcoder"
    # the transcoder shares its group's forward passes with an SAE (the planner's grouping, two per group)
    assert any({"mlp_out/layer_0", "transcoder/layer_0"} <= set(g["sae_ids"]) for g in manifest["groups"])
    metrics = json.loads((suite.suite_dir / "metrics.json").read_text())
    tc = metrics["transcoder/layer_1"]
    assert {"variance_explained", "fvu", "l0", "dead_fraction", "dense_fraction"} <= set(tc)
    assert "fvu" not in metrics["mlp_out/layer_1"]
    sae = SAE.load_from_disk(suite.suite_dir / "transcoder" / "layer_1")
    assert isinstance(sae, TopKSkipTranscoder) and isinstance(sae, SkipTranscoder)
    assert sae.cfg.metadata.hook_name == "blocks.1.ln2.hook_normalized"
    assert sae.cfg.metadata.hook_name_out == "blocks.1.hook_mlp_out" and sae.cfg.normalize_activations == "none"
    # the recorded EV is of the MLP output on held-out tokens (it is ~300x smaller than the input on this random model:
    # the per-part scaling learns it in 6 steps); the saved file, on raw activations, predicts it better than zero
    assert tc["variance_explained"] > 0.3 and abs(tc["fvu"] + tc["variance_explained"] - 1) < 1e-4, tc
    tokens = tiny_model.to_tokens(TINY_TEXT, prepend_bos=False)
    _, cache = tiny_model.run_with_cache(tokens, names_filter=[sae.cfg.metadata.hook_name, "blocks.1.hook_mlp_out"])
    x, y = cache["blocks.1.ln2.hook_normalized"][:, 1:], cache["blocks.1.hook_mlp_out"][:, 1:]
    with torch.no_grad():
        relative_error = (sae(x) - y).pow(2).sum() / y.pow(2).sum()
    assert relative_error < 1, relative_error  # an unfolded target scale (~300) would put it near 1e5


def test_resume_reproduces_the_transcoders(suite, tiny_qwen3_dir, chat_jsonl, tiny_model, tmp_path):
    class Crash(Exception):
        pass

    def crash(group: int, step: int) -> None:
        if group == 0 and step >= 2:
            raise Crash

    config = SuiteTrainingConfig(model=str(tiny_qwen3_dir), dataset=str(chat_jsonl), out=str(tmp_path / "r"), **SUITE)
    with pytest.raises(Crash):
        train_suite(config, loaded_model=tiny_model, progress=False, on_checkpoint=crash)
    resumed = train_suite(config.replace(resume=True), loaded_model=tiny_model, progress=False)
    assert resumed.manifest["groups"][0]["resumed_from_step"] == 2
    for name in ("transcoder/layer_0", "transcoder/layer_1"):
        a = load_file(str(suite.suite_dir / name / "sae_weights.safetensors"))
        b = load_file(str(resumed.suite_dir / name / "sae_weights.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed.manifest["metrics"] == suite.manifest["metrics"]


def test_a_suite_with_transcoders_becomes_a_release(suite):
    release = register_suite(suite.suite_dir, release="t1-transcoder-suite")
    key = suite.plan.suite.spec.key
    sae = SAE.from_pretrained(release, f"{key}/transcoder/layer_0")
    assert isinstance(sae, Transcoder) and sae.cfg.metadata.hook_name_out == "blocks.0.hook_mlp_out"


def test_cli_flag_plans_transcoders(capsys, tmp_path):
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    argv = ["train", "--model", "Qwen/Qwen3-4B", "--layers", "0-1", "--sites", "mlp_out", "--transcoders"]
    args = parser.parse_args([*argv, "--plan-only", "--memory-gb", "200", "--out", str(tmp_path / "s")])
    args.func(args)
    assert "qwen3-4b-paper-tc-40k: 4 SAEs" in capsys.readouterr().out
    args = parser.parse_args(["train", "--sites", "none", "--transcoders", "--transcoder-kind", "relu", "--plan-only"])
    args.func(args)
    assert "organism-paper-transcoders-2k: 6 SAEs" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- bundled set
def test_bundled_transcoder_set_loads_offline_and_predicts_the_mlp_output():
    rows = list_release_saes(r"^organism/transcoder/layer_\d+$")
    assert list(rows["layer"]) == list(range(6)), rows
    assert (rows["variance_explained"] >= 0.80).all(), rows
    model = load_model("organism")
    text = "<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\nMix flour, water and yeast."
    tokens = model.to_tokens(text, prepend_bos=False)
    sae = SAE.from_pretrained("qwen3-instruct-sae", "organism/transcoder/layer_2")
    assert isinstance(sae, Transcoder)
    hook_in, hook_out = sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out
    assert (hook_in, hook_out) == ("blocks.2.ln2.hook_normalized", "blocks.2.hook_mlp_out")
    _, cache = model.run_with_cache(tokens, names_filter=[hook_in, hook_out])
    x, y = cache[hook_in][0, 1:], cache[hook_out][0, 1:]
    with torch.no_grad():
        ev = 1 - (sae(x) - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
    assert ev > 0.7, ev


# ---------------------------------------------------------------------------------------------- MoE
def test_moe_block_transcoder_trains_and_replaces_the_sparse_moe_block(tiny_moe_dir, chat_jsonl, tmp_path):
    """Qwen3-MoE (hf backend): the transcoder reads the post-attention RMSNorm output and predicts the sparse MoE
    block's output (router + experts), planned and trained by the suite, saved as a SAELens transcoder, evaluated
    as a replacement of that block."""
    hf_model = load_model(tiny_moe_dir, backend="hf")
    assert hf_model.qwen3_spec.kind == "moe"
    result = _train(
        tiny_moe_dir,
        chat_jsonl,
        tmp_path / "moe",
        hf_model,
        recipe="paper",
        backend="hf",
        layers=[1],
        sites=["none"],
        transcoder_skip=False,
        transcoder_kind="relu",
        transcoder_width=256,
        training_tokens=32_768,
        checkpoint_every_tokens=None,
    )
    assert list(result.manifest["saes"]) == ["transcoder/layer_1"]
    sae = SAE.load_from_disk(result.suite_dir / "transcoder" / "layer_1")
    assert type(sae) is Transcoder
    hook_in, hook_out = sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out
    assert (hook_in, hook_out) == ("model.layers.1.post_attention_layernorm", "model.layers.1.mlp")
    assert result.metrics["variance_explained"].iloc[0] > 0.3, result.metrics  # held-out EV, a few steps in
    rows = [json.loads(line)["messages"] for line in chat_jsonl.read_text().splitlines()[:20]]
    texts = [format_chat(hf_model.tokenizer, m[0]["content"]) + m[1]["content"] for m in rows]
    xs, ys = [], []
    for text in texts:
        _, cache = hf_model.run_with_cache(
            torch.tensor([hf_model.tokenizer(text)["input_ids"]]), names_filter=[hook_in, hook_out]
        )
        xs.append(cache[hook_in][0, 1:])
        ys.append(cache[hook_out][0, 1:])
    x, y = torch.cat(xs), torch.cat(ys)
    with torch.no_grad():
        relative_error = (sae(x) - y).pow(2).sum() / y.pow(2).sum()
    assert relative_error < 0.85, relative_error  # the saved file predicts the MoE block's output (better than zero)
    config = SuiteEvalConfig(n_batches=1, batch_size_prompts=4, context_size=32, progress=False)
    evaluated = evaluate_suite(suite_dir=result.suite_dir, model=hf_model, config=config)
    row = evaluated.table.iloc[0]
    assert row["backend"] == "hf" and row["hook_name_out"] == "model.layers.1.mlp" and row["explained_variance"] > 0.1
    assert evaluated.replacement is not None and evaluated.replacement["layers"].iloc[0] == "1"
    replaced = evaluated.replacement.iloc[0]  # the MoE block replaced: CE against the clean model's, on the hf backend
    assert replaced["ce_loss_with_replacement"] != replaced["ce_loss_without_replacement"]
    assert replaced["ce_positions"] > 0

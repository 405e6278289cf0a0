"""Every SAE architecture SAELens trains, in a qwen3-scope suite (`--architecture`): each trains a few steps with a
sparsity sweep on a tiny real Qwen3, saves, loads back through SAELens as its inference class, and is evaluated by
the suite evaluation; bad architecture input gives errors naming the choices."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import run_cli, write_chat_jsonl
from sae_lens import SAE
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY

from qwen3_scope import load_model
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.evaluation.held_out import HeldOutTokens
from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
from qwen3_scope.training.cli import add_cli
from qwen3_scope.training.config import ARCHITECTURES, SuiteTrainingConfig
from qwen3_scope.training.parsing import parse_sae_field
from qwen3_scope.training.recipes import RecipeConfigError, build_suite
from qwen3_scope.training.suite import train_suite

pytestmark = pytest.mark.usefixtures("one_thread")

# What each architecture saves as (SAELens' own inference classes; BatchTopK and Matryoshka become JumpReLU SAEs whose
# threshold is the batch threshold learned in training) and the id suffix of its sweep SAE (--sparsities 8, or an L1
# coefficient of 2 for the L1 architectures).
EXPECTED = {
    "standard": ("standard", "l1_2"),
    "gated": ("gated", "l1_2"),
    "topk": ("topk", "k_8"),
    "abstopk": ("abstopk", "k_8"),
    "batchtopk": ("jumprelu", "k_8"),
    "matryoshka_batchtopk": ("jumprelu", "k_8"),
    "jumprelu": ("jumprelu", "l0_8"),
    "matching_pursuit": ("matching_pursuit", "k_8"),
}
EVAL = SuiteEvalConfig(n_batches=2, batch_size_prompts=4, context_size=32, progress=False, predicted_tokens_only=False)


def test_every_trainable_sae_lens_architecture_is_a_choice():
    trainable = {name for name in SAE_TRAINING_CLASS_REGISTRY if "transcoder" not in name and "_fast" not in name}
    assert set(ARCHITECTURES) == trainable == set(EXPECTED)


@pytest.fixture(scope="module")
def model(tiny_qwen3_dir):
    return load_model(str(tiny_qwen3_dir))


@pytest.fixture(scope="module")
def suites(tiny_qwen3_dir, model, tmp_path_factory):
    """One tiny suite per architecture (the suite's config holds one architecture): layer 1 resid_post, width 64, a
    default SAE and one sweep SAE, 8 steps of 256 tokens
    (JumpReLU with a low initial threshold through --sae-field: the small recipe's 0.5 starts silent on it)."""
    root = tmp_path_factory.mktemp("architectures")
    data = write_chat_jsonl(root / "chats.jsonl", 600)
    out = {}
    for arch in ARCHITECTURES:
        l1 = arch in ("standard", "gated")
        config = SuiteTrainingConfig(
            model=str(tiny_qwen3_dir),
            dataset=str(data),
            out=str(root / arch),
            architecture=arch,
            layers=[1],
            sites=["resid_post"],
            width=64,
            training_tokens=2048,
            runner_overrides={"train_batch_size_tokens": 256, "n_batches_for_norm_estimate": 2},  # 8 small steps
            sparsities=[2.0] if l1 else [8.0],
            k=16 if arch not in ("standard", "gated", "jumprelu") else None,
            target_l0=16 if arch == "jumprelu" else None,
            l1_coefficient=5.0 if l1 else None,
            matryoshka_widths=[16, 32] if arch == "matryoshka_batchtopk" else None,
            sae_fields=[parse_sae_field("jumprelu_init_threshold=0.01")] if arch == "jumprelu" else None,
        )
        out[arch] = train_suite(config, loaded_model=model, progress=False)
    return out


@pytest.fixture(scope="module")
def tokens(model):
    docs = ["the cat sat on the mat and the dog ran in the park", "one two three four five six seven"] * 20
    return HeldOutTokens.from_documents(model.tokenizer, docs, EVAL.context_size, EVAL.batch_size_prompts, 2)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_architecture_trains_a_sweep_saves_loads_and_evaluates(arch, suites, model, tokens):
    saved, variant = EXPECTED[arch]
    suite = suites[arch]
    ids = {"resid_post/layer_1", f"resid_post/layer_1/{variant}"}
    assert set(suite.manifest["saes"]) == ids
    recorded = {json.loads((suite.suite_dir / i / "cfg.json").read_text())["architecture"] for i in ids}
    assert recorded == {saved}
    written = "".join((suite.suite_dir / f).read_text() for f in ("manifest.json", *(f"{i}/cfg.json" for i in ids)))
    assert str(suite.suite_dir.parent) not in written  # no path of this machine
    for sae_id in ids:
        sae = SAE.load_from_disk(suite.suite_dir / sae_id)
        assert type(sae) is SAE_CLASS_REGISTRY[saved][0] and type(sae).__module__.startswith("sae_lens."), type(sae)
        assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    result = evaluate_suite(suite_dir=suite.suite_dir, model=model, tokens=tokens, config=EVAL)
    table = result.table.set_index("sae_id")
    assert set(table.index) == ids
    for column in ("l0", "explained_variance", "ce_loss_score", "dead_fraction"):
        assert table[column].notna().all(), (arch, column, table[column])
    default, sweep = table.loc["resid_post/layer_1"], table.loc[f"resid_post/layer_1/{variant}"]
    assert 0 < sweep["l0"] < 64 and 0 < default["l0"] < 64, (arch, sweep["l0"], default["l0"])
    if arch in ("topk", "abstopk"):  # at most k per token (a top-k value may be <= 0)
        assert 7 < sweep["l0"] <= 8 and 14 < default["l0"] <= 16, (sweep["l0"], default["l0"])
    if arch == "matching_pursuit":  # at most max_iterations atoms per token
        assert sweep["l0"] <= 8 + 1e-6 and default["l0"] <= 16 + 1e-6
    if arch in ("standard", "gated"):  # a smaller L1 coefficient, a denser code
        assert sweep["l0"] > default["l0"], (sweep["l0"], default["l0"])
    # eight steps do not make good SAEs (the comparison on the organism measures that); they make sane ones
    assert (table["explained_variance"] > -1).all() and (table["dead_fraction"] < 0.5).all(), table


def plan(**changes):
    """The jobs of a Qwen3-4B layer-3 resid_post suite of width 1,024 (no weights needed)."""
    return build_suite(
        SuiteTrainingConfig(model="Qwen/Qwen3-4B", layers=[3], sites=["resid_post"], width=1024, **changes)
    )


def test_matryoshka_widths_end_at_the_width_and_batchtopk_keeps_its_threshold(suites):
    assert plan(architecture="matryoshka_batchtopk").jobs[0].sae_cfg.matryoshka_widths == [128, 256, 512, 1024]
    assert plan(architecture="matryoshka_batchtopk", matryoshka_widths=[64]).jobs[0].sae_cfg.matryoshka_widths == [
        64,
        1024,
    ]
    sae = SAE.load_from_disk(suites["batchtopk"].suite_dir / "resid_post" / "layer_1")
    assert torch.all(sae.threshold > 0) and torch.allclose(sae.threshold, sae.threshold[0])


def test_bad_architecture_input_names_the_choices(capsys):
    with pytest.raises(ConfigError, match=r"unknown SAE architecture 'relu'; choose one of standard, gated, topk"):
        SuiteTrainingConfig(architecture="relu")
    with pytest.raises(ConfigError, match=r"set k with --k, not --sae-field"):
        SuiteTrainingConfig(architecture="batchtopk", sae_fields=[("k", 3)])
    with pytest.raises(RecipeConfigError, match=r"'topk_threshold_lr' is not a setting of topk SAEs.*choose from"):
        plan(architecture="topk", sae_fields=["topk_threshold_lr=0.1"])
    with pytest.raises(RecipeConfigError, match=r"k only applies to TopK .*--architecture is standard: .*--l1-coeff"):
        plan(architecture="standard", k=10)
    with pytest.raises(RecipeConfigError, match=r"l1_coefficient only applies to L1 .*\(standard, gated\)"):
        plan(architecture="batchtopk", l1_coefficient=3.0)
    with pytest.raises(RecipeConfigError, match=r"matryoshka_widths only applies to --architecture matryoshka"):
        plan(architecture="topk", matryoshka_widths=[8, 16])
    with pytest.raises(RecipeConfigError, match=r"matryoshka width 5000 exceeds the resid_post SAE width"):
        plan(architecture="matryoshka_batchtopk", matryoshka_widths=[64, 5000])
    with pytest.raises(RecipeConfigError, match=r"no fast class for architecture 'gated'"):
        plan(architecture="gated", fast=True)
    with pytest.raises(ConfigError, match="strictly increasing"):
        SuiteTrainingConfig(architecture="matryoshka_batchtopk", matryoshka_widths=[64, 32])
    assert SuiteTrainingConfig(sae_fields={"topk_threshold_lr": 0.02}).sae_fields == [("topk_threshold_lr", 0.02)]
    assert parse_sae_field("use_matryoshka_aux_loss=true") == ("use_matryoshka_aux_loss", True)
    assert parse_sae_field("residual_threshold = 0.05") == ("residual_threshold", 0.05)
    with pytest.raises(ConfigError, match="write KEY=VALUE"):
        parse_sae_field("residual_threshold")
    code, err = run_cli(["train", "--architecture", "relu", "--plan-only"], capsys)
    assert code == 2 and "choose one of standard, gated, topk, abstopk, batchtopk" in err, err
    code, err = run_cli(["train", "--architecture", "gated", "--sae-field", "k=3", "--plan-only"], capsys)
    assert code == 2 and "set k with --k" in err, err
    code, err = run_cli(["train", "--architecture", "gated", "--sae-field", "lp_norm=2", "--plan-only"], capsys)
    assert code == 2 and "'lp_norm' is not a setting of gated SAEs" in err and "l1_warm_up_steps" in err, err


def test_plan_and_describe_show_the_architecture(capsys, tmp_path):
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    argv = ["train", "--architecture", "batchtopk", "--layers", "3", "--sites", "mlp_out", "--sparsities", "16", "32"]
    args = parser.parse_args([*argv, "--plan-only", "--out", str(tmp_path / "s")])
    args.func(args)
    out = capsys.readouterr().out
    assert "organism-paper-batchtopk-k50-2k: 3 SAEs" in out, out
    args = parser.parse_args(["train", "--architecture", "matching_pursuit", "--describe"])
    args.func(args)
    out = capsys.readouterr().out
    assert "matching_pursuit" in out and "sae.max_iterations" in out and "sae.target_l0" not in out, out

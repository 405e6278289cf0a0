"""Suite training: recipes -> SAELens configs, chat data, planning, training, resume, CLI, clear errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_TEXT, suite_for, write_chat_jsonl

TOKENS = 12_000  # per SAE in the small runs: ~12 steps of 1024 tokens
pytestmark = [
    pytest.mark.filterwarnings("ignore:dataset .* SAELens will reuse it"),  # the small chat file, by design
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def chat_jsonl(tmp_path_factory) -> Path:
    return write_chat_jsonl(tmp_path_factory.mktemp("chats") / "chats.jsonl", 1500)


@pytest.fixture(scope="module")
def tiny_model(tiny_qwen3_dir):
    from qwen3_scope import load_model

    return load_model(str(tiny_qwen3_dir))


def _train(model_dir, out, dataset, recipe="qwen-scope", loaded_model=None, on_checkpoint=None, **kwargs):
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    kwargs.setdefault("sites", ["resid_post", "mlp_out", "attn_out"])
    kwargs.setdefault("training_tokens", TOKENS)
    config = SuiteTrainingConfig(model=str(model_dir), recipe=recipe, out=out, dataset=str(dataset), **kwargs)
    return train_suite(config, loaded_model=loaded_model, on_checkpoint=on_checkpoint, progress=False)


@pytest.fixture(scope="module")
def trained_suite(tiny_qwen3_dir, tiny_model, chat_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("suites") / "all_sites"
    return _train(tiny_qwen3_dir, out, chat_jsonl, loaded_model=tiny_model, training_tokens=16_384)


# ---------------------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize(
    "model,n_saes,width",
    [("Qwen/Qwen3-1.7B", 28 * 3, 32_768), ("Qwen/Qwen3-4B", 36 * 3, 40_960), ("Qwen/Qwen3-8B", 9, 65_536)],
)
def test_paper_recipe_matches_the_paper_layout(model, n_saes, width):
    from sae_lens import JumpReLUTrainingSAEConfig, LanguageModelSAERunnerConfig, MultiSAETrainingRunnerConfig

    from qwen3_scope import hook_name, resolve_model, site_d_in

    spec = resolve_model(model)
    suite = suite_for(model, "paper")
    assert len(suite.jobs) == n_saes
    sites = {j.site for j in suite.jobs}
    assert sites == ({"resid_post"} if model.endswith("8B") else {"resid_post", "mlp_out", "attn_out"})
    assert {j.layer for j in suite.jobs} == set(range(9) if model.endswith("8B") else range(spec.n_layers))
    assert suite.name == f"{spec.key}-paper-{width // 1000}k"
    for job in suite.jobs:
        assert job.d_in == site_d_in(spec, job.site) == spec.d_model
        assert job.hook_name == hook_name(job.site, job.layer, "hooked", spec)
        assert isinstance(job.sae_cfg, JumpReLUTrainingSAEConfig)
        assert (job.d_sae, job.sae_cfg.d_sae, job.sae_cfg.target_l0) == (width, width, 160)
        assert job.sae_cfg.jumprelu_sparsity_loss_mode == "quadratic"
    cfg = suite.runner_config(suite.jobs[-1])
    assert isinstance(cfg, LanguageModelSAERunnerConfig)
    assert (cfg.hook_name, cfg.sae.d_in, cfg.sae.d_sae) == (suite.jobs[-1].hook_name, spec.d_model, width)
    assert cfg.prepend_bos is False and cfg.context_size == 1024 and cfg.lr == 7e-5
    assert cfg.exclude_special_tokens == [151643, 151644, 151645, 151667, 151668]
    # the dict form (what runner_cfg.json holds) is accepted unchanged by SAELens
    again = LanguageModelSAERunnerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert (again.hook_name, again.sae.target_l0, again.sae.d_sae) == (cfg.hook_name, 160, width)
    multi = suite.multi_config(suite.jobs[:4])
    assert isinstance(multi, MultiSAETrainingRunnerConfig)
    assert multi.hook_names_per_sae == {j.sae_id: j.hook_name for j in suite.jobs[:4]}


@pytest.mark.parametrize("model", ["Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B"])
def test_qwen_scope_recipe(model):
    from sae_lens import TopKTrainingSAEConfig

    from qwen3_scope import resolve_model

    spec = resolve_model(model)
    suite = suite_for(model, "qwen-scope")
    assert [j.layer for j in suite.jobs] == list(range(spec.n_layers)) and {j.site for j in suite.jobs} == {
        "resid_post"
    }
    for job in suite.jobs:
        assert isinstance(job.sae_cfg, TopKTrainingSAEConfig)
        assert (job.d_sae, job.sae_cfg.k, job.sae_cfg.aux_loss_coefficient) == (16 * spec.d_model, 50, 1 / 32)
    assert suite.outlier_norm_factor == 10.0
    k100 = suite_for(model, "qwen-scope", k=100, layers=[0, 1])
    assert [j.sae_cfg.k for j in k100.jobs] == [100, 100] and "k100" in k100.name


def test_every_family_model_builds_with_both_recipes():
    from qwen3_scope.model.family import list_models, resolve_model

    for name in list_models(kind="dense"):  # MoE and Qwen3.5 suites: tests/test_family.py
        spec = resolve_model(name)
        for recipe, n_sites in (("paper", 3), ("qwen-scope", 1)):
            suite = suite_for(name, recipe)
            n_layers = 9 if (name, recipe) == ("Qwen/Qwen3-8B", "paper") else spec.n_layers
            assert len(suite.jobs) == n_layers * (1 if name == "Qwen/Qwen3-8B" and recipe == "paper" else n_sites)
            assert {j.d_sae for j in suite.jobs} == {16 * spec.d_model} and suite.scale == "family"


def test_recipe_subsets_backends_and_fast_classes():
    from qwen3_scope import hook_name, resolve_model

    spec = resolve_model("Qwen/Qwen3-4B")
    suite = suite_for("Qwen/Qwen3-4B", "paper", layers=[3, 7], sites=["mlp_out"], backend="hf")
    assert [(j.sae_id, j.hook_name) for j in suite.jobs] == [
        ("mlp_out/layer_3", hook_name("mlp_out", 3, "hf", spec)),
        ("mlp_out/layer_7", hook_name("mlp_out", 7, "hf", spec)),
    ]
    assert suite.runner_config(suite.jobs[0]).model_class_name == "AutoModelForCausalLM"
    z = suite_for("Qwen/Qwen3-4B", "paper", layers=[0], sites=["attn_z"])
    assert z.jobs[0].d_in == spec.d_attn == 4096 and z.jobs[0].sae_cfg.reshape_activations == "hook_z"
    fast = suite_for("Qwen/Qwen3-1.7B", "qwen-scope", layers=[0], fast=True)
    assert fast.jobs[0].architecture == "topk_fast"
    assert suite_for("Qwen/Qwen3-1.7B", "paper", layers=[0], fast=True).jobs[0].architecture == "jumprelu_fast"


def test_recipe_d_in_matches_the_adapters_on_the_real_shape():
    """d_in of every site comes from the hook's real activation width (8B shape, meta device, 1 layer)."""
    from qwen3_scope.model.loading import meta_model, site_shapes

    suite = suite_for("Qwen/Qwen3-8B", "paper", layers=[0], sites=["resid_post", "mlp_out", "attn_out", "attn_z"])
    shapes = site_shapes(meta_model("Qwen/Qwen3-8B", "hooked", n_layers=1), "hooked", [j.hook_name for j in suite.jobs])
    for job in suite.jobs:
        shape = shapes[job.hook_name]
        assert job.d_in == shape[-1] * (shape[-2] if len(shape) == 4 else 1)


def test_every_hyperparameter_has_a_source():
    from qwen3_scope.training.recipes import RECIPES

    for recipe in RECIPES.values():
        for small in (False, True):
            table = recipe.hyperparameters(small=small)
            assert table["source"].str.len().min() > 3
            assert {"runner.lr", "runner.training_tokens", "width"} <= set(table["hyperparameter"])


def test_naming_round_trip():
    from qwen3_scope.naming import parse_sae_id, sae_id, suite_name, width_label

    assert sae_id("mlp_out", 12) == "mlp_out/layer_12"
    assert parse_sae_id("qwen3-4b/attn_out/layer_3") == ("qwen3-4b", "attn_out", 3)
    assert parse_sae_id(sae_id("resid_post", 0)) == (None, "resid_post", 0)
    assert [width_label(w) for w in (65_536, 32_768, 1_048_576, 512)] == ["65k", "32k", "1m", "512"]
    assert suite_name("qwen3-8b", "paper", 65_536) == "qwen3-8b-paper-65k"
    with pytest.raises(ValueError, match="not a qwen3-scope SAE id"):
        parse_sae_id("layer_3/resid_post")


def test_sparsity_sweep_ids_configs_and_neuronpedia_ids():
    """A sweep adds one SAE per extra sparsity at the sweep layers only, with its own id, config and Neuronpedia id."""
    from qwen3_scope.naming import neuronpedia_id, parse_sae_id, sae_id, sae_variant, sparsity_variant
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.recipes import RecipeConfigError

    assert sae_id("mlp_out", 3, "organism", sparsity_variant(target_l0=16)) == "organism/mlp_out/layer_3/l0_16"
    assert parse_sae_id("organism/mlp_out/layer_3/l0_16") == ("organism", "mlp_out", 3)
    assert sae_variant("resid_post/layer_3/k_32") == "k_32" and sae_variant("resid_post/layer_3") is None
    assert neuronpedia_id("organism", "mlp_out", 3, 1280, "l0_16") == "organism/3-qwen3scope-mlpout-1k-l0-16"
    suite = suite_for("Qwen/Qwen3-1.7B", "paper", layers=[2, 5], sparsities=[80, 160, 320], sweep_layers=[5])
    ids = [j.sae_id for j in suite.jobs]
    assert len(ids) == 2 * 3 + 3 * 2 and "mlp_out/layer_5/l0_320" in ids and "mlp_out/layer_2/l0_80" not in ids
    assert {j.sae_cfg.target_l0 for j in suite.jobs if j.layer == 5} == {80.0, 160.0, 320.0}
    topk = suite_for("Qwen/Qwen3-1.7B", "qwen-scope", layers=[0], sparsities=[32, 100])
    assert [(j.sae_id, j.sae_cfg.k) for j in topk.jobs] == [
        ("resid_post/layer_0", 50),
        ("resid_post/layer_0/k_32", 32),
        ("resid_post/layer_0/k_100", 100),
    ]
    with pytest.raises(RecipeConfigError, match="sweep layers"):
        suite_for("Qwen/Qwen3-1.7B", "paper", layers=[2], sparsities=[80], sweep_layers=[3])
    with pytest.raises(ValueError, match="sweep_layers needs sparsities"):
        SuiteTrainingConfig(sweep_layers=[1])
    with pytest.raises(ValueError, match="sparsities must be positive"):
        SuiteTrainingConfig(sparsities=[0])


def test_site_widths_give_a_low_rank_site_its_own_dictionary_size():
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.recipes import RecipeConfigError

    cfg = SuiteTrainingConfig(site_widths=["attn_out=640", ("mlp_out", 2048)])
    assert cfg.site_widths == [("attn_out", 640), ("mlp_out", 2048)]
    suite = suite_for("Qwen/Qwen3-1.7B", "paper", layers=[0], width=1280, site_widths=cfg.site_widths)
    assert {j.site: j.d_sae for j in suite.jobs} == {"resid_post": 1280, "mlp_out": 2048, "attn_out": 640}
    with pytest.raises(ValueError, match="SITE=WIDTH"):
        SuiteTrainingConfig(site_widths=["attn_out:640"])
    with pytest.raises(RecipeConfigError, match="does not train"):
        suite_for("Qwen/Qwen3-1.7B", "paper", layers=[0], sites=["resid_post"], site_widths=[("attn_out", 640)])


def test_resample_sites_turn_on_direction_resampling_for_those_sites_only():
    from qwen3_scope.cli import main as cli_main
    from qwen3_scope.training.config import organism_suite_config
    from qwen3_scope.training.recipes import RecipeConfigError

    suite = suite_for("Qwen/Qwen3-1.7B", "paper", layers=[0], fast=True, resample_sites=["attn_out"])
    after = {j.site: j.sae_cfg.reopen_resample_after for j in suite.jobs}
    assert after == {"resid_post": 0, "mlp_out": 0, "attn_out": 1}
    assert organism_suite_config().resample_sites == ["attn_out"]
    with pytest.raises(RecipeConfigError, match="fast JumpReLU class"):
        suite_for("Qwen/Qwen3-1.7B", "qwen-scope", layers=[0], fast=True, resample_sites=["resid_post"])
    with pytest.raises(RecipeConfigError, match="not among the suite's sites"):
        suite_for("Qwen/Qwen3-1.7B", "paper", layers=[0], sites=["resid_post"], fast=True, resample_sites=["attn_out"])
    assert cli_main(["train", "--model", "organism", "--resample-sites", "attn_z", "--plan-only"]) == 2


# ---------------------------------------------------------------------------------------------- planner
def test_planner_groups_within_budget_and_prices_the_plan():
    from qwen3_scope.training.planner import GIB, PlanError, plan_suite

    suite = suite_for("Qwen/Qwen3-1.7B", "paper")
    plan = plan_suite(suite, memory_budget_gb=40, matmul_flops=2.5e11)
    assert sorted(j.sae_id for g in plan.groups for j in g.jobs) == sorted(j.sae_id for j in suite.jobs)
    assert all(g.memory_bytes <= 40 * GIB for g in plan.groups) and len(plan.groups) > 1
    layers = [[j.layer for j in g.jobs] for g in plan.groups]
    assert all(max(a) <= min(b) for a, b in zip(layers, layers[1:]))  # layer order: early groups stop early
    assert plan.baseline_flops > 1.5 * plan.total_flops  # shared passes save forward compute
    text = plan.summary()
    assert "expected cost" in text and suite.name in text
    capped = plan_suite(suite, memory_budget_gb=1000, max_saes_per_group=10, matmul_flops=2.5e11)
    assert max(len(g.jobs) for g in capped.groups) <= 10
    with pytest.raises(PlanError, match="alone needs .* GiB"):
        plan_suite(suite, memory_budget_gb=1, matmul_flops=2.5e11)


# ---------------------------------------------------------------------------------------------- data
def test_data_is_chat_formatted_without_bos(tiny_model, chat_jsonl, tmp_path):
    from qwen3_scope.data import END_OF_DOCUMENT, prepare_data

    data = prepare_data(tiny_model.tokenizer, 3000, 500, tmp_path / "d", source=str(chat_jsonl), context_size=64)
    ids = data.train[0]["input_ids"]  # tokenized once, packed into SAELens' pre-tokenized layout
    assert {len(row) for row in data.train["input_ids"]} == {64}
    assert ids[0] == tiny_model.tokenizer.convert_tokens_to_ids("<|im_start|>")  # no BOS in front
    text = tiny_model.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\n") and "<|im_start|>assistant\n" in text and END_OF_DOCUMENT in text
    held = data.heldout[0]["text"]
    assert held.startswith("<|im_start|>user\n") and held.endswith(END_OF_DOCUMENT)
    assert data.info["train_tokens"] >= 3000 and data.info["heldout_tokens"] >= 500 and data.info["tokenized"]


def test_aligned_windows_start_every_document_and_count_real_tokens(tiny_model, chat_jsonl, tmp_path):
    """--align-documents: no window starts mid-document; the rest of a window is padding (a control token), and the
    token counts are of real tokens only."""
    from qwen3_scope.data import prepare_data
    from qwen3_scope.model.chat import special_token_ids

    tok = tiny_model.tokenizer
    data = prepare_data(tok, 3000, 500, tmp_path / "d", source=str(chat_jsonl), context_size=64, align_documents=True)
    rows = data.train["input_ids"]
    im_start, pad = tok.convert_tokens_to_ids("<|im_start|>"), tok.pad_token_id
    assert pad in special_token_ids(tok) and all(len(row) == 64 for row in rows)
    assert all(row[0] == im_start for row in rows)  # every chat of this file is shorter than a window
    # each document ends in <|endoftext|>, the pad token too: a row's real tokens end with the first of its trailing run
    real = 0
    for row in rows:
        run = next((i for i, t in enumerate(reversed(row)) if t != pad), len(row))
        assert run >= 1  # every chat of this file ends inside its window, in <|endoftext|>
        real += len(row) - run + 1
    assert data.info["train_tokens"] == real >= 3000 and data.info["aligned_documents"]
    assert any(row[-2] == pad for row in rows)  # windows end in padding rather than in the next document's start
    for row in rows:  # documents follow each other whole: each <|im_start|>user begins right after an <|endoftext|>
        assert all(part.startswith("<|im_start|>user") for part in tok.decode(row).split("<|endoftext|>") if part)


def test_data_sources(tiny_model, tmp_path):
    import datasets

    from qwen3_scope.data import DatasetSourceError, prepare_data

    rows = [
        {"conversations": [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "hello friend"}]},
        {"prompt": "one two", "response": "three four"},
        {"text": "the cat sat on the mat"},
    ] * 40
    datasets.Dataset.from_list(rows[1::3]).to_parquet(str(tmp_path / "rows.parquet"))
    datasets.Dataset.from_list(rows[::3]).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "plain.txt").write_text("\n".join(TINY_TEXT * 20))
    tok = tiny_model.tokenizer
    first = lambda data: tok.decode(data.train[0]["input_ids"])  # noqa: E731
    assert first(prepare_data(tok, 50, 10, tmp_path / "d", str(tmp_path / "rows.parquet"), context_size=8)).startswith(
        "<|im_start|>user\none two"
    )
    saved = prepare_data(tok, 50, 10, tmp_path / "d", str(tmp_path / "saved"), context_size=16)
    assert "<|im_start|>assistant\nhello friend" in tok.decode(
        saved.train[0]["input_ids"] + saved.train[1]["input_ids"]
    )
    plain = prepare_data(tok, 50, 10, tmp_path / "d", str(tmp_path / "plain.txt"), context_size=4)
    assert plain.heldout[0]["text"] == TINY_TEXT[0] + "<|endoftext|>"  # the first documents are held out
    assert first(plain) == tok.decode(tok(TINY_TEXT[1] + "<|endoftext|>")["input_ids"][:4])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_data(tok, 50, 10, tmp_path / "d", str(tmp_path / "missing.jsonl"))
    with pytest.raises(DatasetSourceError, match="offline"):
        prepare_data(tok, 50, 10, tmp_path / "d", "some-org/some-chat-dataset")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"label": 1}) + "\n")
    with pytest.raises(DatasetSourceError, match="rows need 'messages'"):
        prepare_data(tok, 50, 10, tmp_path / "d", str(tmp_path / "bad.jsonl"))


def test_organism_corpus_is_the_offline_default(tiny_model):
    from qwen3_scope.data import organism_rows

    rows = organism_rows(50)
    assert len(rows) == 50 and any("messages" in r for r in rows)
    assert organism_rows(20) == rows[:20]  # deterministic: the first documents of the organism's corpus


# ---------------------------------------------------------------------------------------------- training
def test_suite_trains_loadable_saes_that_beat_baselines(trained_suite, tiny_model):
    from sae_lens import SAE, TopKTrainingSAE

    suite_dir, manifest = trained_suite.suite_dir, trained_suite.manifest
    assert manifest["status"] == "complete" and len(manifest["saes"]) == 6
    assert {"model", "recipe", "training_tokens", "data", "versions", "plan", "groups"} <= set(manifest)
    assert json.loads((suite_dir / "metrics.json").read_text()) == manifest["metrics"]
    assert not (suite_dir / ".checkpoints").exists()
    tokens = tiny_model.to_tokens(
        ["the dog ran in the park and the cat sat on the mat", TINY_TEXT[1]], prepend_bos=False
    )
    for sae_id_, entry in manifest["saes"].items():
        folder = suite_dir / sae_id_
        assert {"cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "runner_cfg.json"} <= {
            p.name for p in folder.iterdir()
        }
        sae = SAE.load_from_disk(str(folder))
        assert sae.cfg.metadata.hook_name == entry["hook_name"] and sae.cfg.metadata.prepend_bos is False
        assert sae.cfg.metadata.qwen3_model == str(Path(manifest["model"]["name"])) and sae.cfg.d_in == 64
        _, cache = tiny_model.run_with_cache(tokens, names_filter=[entry["hook_name"]])
        x = cache[entry["hook_name"]][:, 1:].reshape(-1, 64)
        ev = 1 - (sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        torch.manual_seed(0)
        untrained = TopKTrainingSAE(trained_suite.plan.suite.job(sae_id_).sae_cfg)
        untrained.fold_activation_norm_scaling_factor(sae.cfg.d_in**0.5 / x.norm(dim=-1).mean().item())
        ev_untrained = 1 - (untrained(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        # trivial baselines: the mean (explained variance 0) and the same SAE untrained
        assert ev > 0.3 and ev > ev_untrained + 0.3, (sae_id_, ev, ev_untrained)
        assert manifest["metrics"][sae_id_]["variance_explained"] > 0.3
        assert manifest["metrics"][sae_id_]["l0"] == pytest.approx(50, abs=1)


def test_sae_lens_own_runner_replays_a_suite_sae_from_its_runner_cfg(trained_suite, tiny_qwen3_dir, tmp_path):
    """runner_cfg.json is SAELens' own config: LanguageModelSAETrainingRunner re-trains the SAE from it unchanged
    (only the token count and output directory are shortened here)."""
    from sae_lens import SAE, LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner

    from qwen3_scope.model.loading import register_with_transformer_lens

    folder = trained_suite.suite_dir / "mlp_out" / "layer_1"
    cfg_dict = json.loads((folder / "runner_cfg.json").read_text())
    # portable: the dataset and model are named, not located; a replay points them at this machine's copies
    assert (
        cfg_dict["dataset_path"] == "chats.jsonl" and cfg_dict["model_name"] == trained_suite.manifest["model"]["name"]
    )
    assert (
        str(trained_suite.suite_dir) not in (folder / "runner_cfg.json").read_text() + (folder / "cfg.json").read_text()
    )
    model_dir = trained_suite.manifest["config"]["model"]
    assert not Path(model_dir).is_absolute()
    cfg = LanguageModelSAERunnerConfig.from_dict(
        {
            **cfg_dict,
            "training_tokens": 2048,
            "output_path": str(tmp_path / "replay"),
            "dataset_path": str(trained_suite.suite_dir / "data" / "train"),
            "model_name": str(tiny_qwen3_dir),
        }
    )
    register_with_transformer_lens(cfg.model_name)  # TransformerLens only loads local checkpoints it was told about
    # the suite's pre-tokenized data as a Dataset: SAELens 6.54 sends a local *path* of a tokenized dataset to the hub
    # for a tokenizer check (HFValidationError), so a local one goes in as override_dataset
    from qwen3_scope.data import load_prepared

    LanguageModelSAETrainingRunner(cfg, override_dataset=load_prepared(trained_suite.suite_dir / "data").train).run()
    replay = SAE.load_from_disk(str(tmp_path / "replay"))
    assert replay.cfg.metadata.hook_name == "blocks.1.hook_mlp_out" and replay.cfg.d_sae == 1024


RESUME_KWARGS = dict(
    checkpoint_every_tokens=2048,
    max_saes_per_group=1,
    layers=[1],
    sites=["resid_post", "attn_out"],
    recipe="paper",
    training_tokens=8192,
)


@pytest.fixture(scope="module")
def uninterrupted(tiny_qwen3_dir, tiny_model, chat_jsonl, tmp_path_factory):
    return _train(
        tiny_qwen3_dir, tmp_path_factory.mktemp("whole") / "suite", chat_jsonl, loaded_model=tiny_model, **RESUME_KWARGS
    )


def _assert_same_saes(a, b) -> None:
    from safetensors.torch import load_file

    for sae_id_ in a.manifest["saes"]:
        for name in ("sae_weights.safetensors", "sparsity.safetensors"):
            x, y = load_file(str(a.suite_dir / sae_id_ / name)), load_file(str(b.suite_dir / sae_id_ / name))
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), (sae_id_, name)
    assert a.manifest["metrics"] == b.manifest["metrics"]


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(
    tiny_qwen3_dir, tiny_model, chat_jsonl, uninterrupted, tmp_path
):
    from qwen3_scope.training.suite import SuiteExistsError

    class Crash(Exception):
        pass

    def crash(group: int, step: int) -> None:
        if group == 1 and step >= 4:
            raise Crash

    with pytest.raises(Crash):
        _train(
            tiny_qwen3_dir,
            tmp_path / "resumed",
            chat_jsonl,
            loaded_model=tiny_model,
            on_checkpoint=crash,
            **RESUME_KWARGS,
        )
    state = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert [g["status"] for g in state["groups"]] == ["done", "running"] and state["groups"][1]["checkpoint_step"] == 4
    assert (tmp_path / "resumed" / "resid_post" / "layer_1").is_dir()  # group 0, finished before the crash
    assert not (tmp_path / "resumed" / "attn_out" / "layer_1").exists()  # nothing half-written
    with pytest.raises(SuiteExistsError, match="--resume"):
        _train(tiny_qwen3_dir, tmp_path / "resumed", chat_jsonl, loaded_model=tiny_model, **RESUME_KWARGS)
    resumed = _train(
        tiny_qwen3_dir, tmp_path / "resumed", chat_jsonl, loaded_model=tiny_model, resume=True, **RESUME_KWARGS
    )
    assert resumed.manifest["groups"][1]["resumed_from_step"] == 4
    _assert_same_saes(uninterrupted, resumed)


def test_a_killed_process_resumes_bit_identically(tiny_qwen3_dir, tiny_model, chat_jsonl, uninterrupted, tmp_path):
    """SIGKILL (no handler, no cleanup) at the first checkpoint of a separate process, then --resume."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "killed"
    code = (  # train_suite's on_checkpoint hook says when the first checkpoint is on disk, then waits for the kill
        "import threading, torch; torch.set_num_threads(1)\n"
        "from qwen3_scope.training.config import SuiteTrainingConfig\n"
        "from qwen3_scope.training.suite import train_suite\n"
        "def wait_for_the_kill(group, step):\n"
        "    print('checkpoint written', flush=True)\n"
        "    threading.Event().wait()\n"
        f"train_suite(SuiteTrainingConfig(model={str(tiny_qwen3_dir)!r}, out={str(out)!r}, dataset={str(chat_jsonl)!r}, "
        f"**{RESUME_KWARGS!r}), progress=False, on_checkpoint=wait_for_the_kill)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    stderr_file = tmp_path / "stderr.txt"
    with stderr_file.open("w") as stderr:  # a file: the child never blocks on a full pipe
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        if not any(line.startswith("checkpoint written") for line in proc.stdout):  # the loop ends at the child's exit
            proc.wait()
            pytest.fail(f"training process ended before its first checkpoint: {stderr_file.read_text()[-2000:]}")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    resumed = _train(tiny_qwen3_dir, out, chat_jsonl, loaded_model=tiny_model, resume=True, **RESUME_KWARGS)
    assert max(g.get("resumed_from_step", 0) for g in resumed.manifest["groups"]) > 0
    _assert_same_saes(uninterrupted, resumed)


# ---------------------------------------------------------------------------------------------- errors
def test_bad_input_gives_clear_errors(tiny_qwen3_dir, tiny_model, chat_jsonl, trained_suite, tmp_path):
    from qwen3_scope.model.sites import SiteUnavailableError, UnknownSiteError
    from qwen3_scope.training.recipes import RecipeConfigError, UnknownRecipeError
    from qwen3_scope.training.suite import ResumeMismatchError

    with pytest.raises(UnknownRecipeError, match="choose one of paper, qwen-scope"):
        suite_for("Qwen/Qwen3-4B", "gemma-scope")
    with pytest.raises(UnknownSiteError, match="unknown site 'resid'"):
        suite_for("Qwen/Qwen3-4B", "paper", sites=["resid"])
    with pytest.raises(IndexError, match="use 0..35"):
        suite_for("Qwen/Qwen3-4B", "paper", layers=[36])
    with pytest.raises(SiteUnavailableError, match="backend"):
        suite_for("Qwen/Qwen3-4B", "paper", sites=["mlp_in"])
    with pytest.raises(RecipeConfigError, match="'hooked'.*'hf'"):
        suite_for("Qwen/Qwen3-4B", "paper", backend="bridge")
    with pytest.raises(RecipeConfigError, match="k only applies to TopK"):
        suite_for("Qwen/Qwen3-4B", "paper", k=50)
    with pytest.raises(
        RecipeConfigError, match=r"buffer .* smaller than one training batch.*n_batches_in_buffer >= 33"
    ):
        suite_for("Qwen/Qwen3-4B", "paper", runner_overrides={"n_batches_in_buffer": 2, "context_size": 128})
    with pytest.raises(RecipeConfigError, match=r"override\(s\) \['learning_rate'\]"):
        suite_for("Qwen/Qwen3-4B", "paper", runner_overrides={"learning_rate": 1e-3})
    with pytest.raises(RecipeConfigError, match="between 0 and the SAE width"):
        suite_for("Qwen/Qwen3-4B", "qwen-scope", k=5000, width=4096)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _train(tiny_qwen3_dir, tmp_path / "x", tmp_path / "nope.jsonl", loaded_model=tiny_model)
    assert not (tmp_path / "x" / "manifest.json").exists()
    with pytest.raises(ResumeMismatchError, match="different settings"):
        _train(
            tiny_qwen3_dir,
            trained_suite.suite_dir,
            chat_jsonl,
            loaded_model=tiny_model,
            resume=True,
            training_tokens=TOKENS * 2,
        )


def test_suite_manifest_round_trips_the_json_on_disk(trained_suite, tmp_path):
    from qwen3_scope.training.manifest import FORMAT, SuiteManifest

    on_disk = json.loads((trained_suite.suite_dir / "manifest.json").read_text())
    manifest = SuiteManifest.read(trained_suite.suite_dir)
    assert on_disk["format"] == FORMAT == "qwen3-scope-suite/1" and manifest.to_dict() == on_disk
    assert SuiteManifest.from_dict({**on_disk, "future_key": 1}).to_dict() == {**on_disk, "future_key": 1}
    manifest.write(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == on_disk


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "not a suite"])
def test_a_damaged_suite_manifest_is_a_clear_error_naming_the_file(trained_suite, tmp_path, damage):
    from qwen3_scope.core.errors import CorruptFileError, MissingFileError
    from qwen3_scope.training.manifest import SuiteManifest

    text = (trained_suite.suite_dir / "manifest.json").read_text()
    file = tmp_path / "manifest.json"
    contents = {"empty": "", "truncated": text[: len(text) // 2], "not a suite": '{"format": "export/1"}'}
    if damage != "missing":
        file.write_text(contents[damage])
    expected = MissingFileError if damage == "missing" else CorruptFileError
    with pytest.raises(expected, match=r"manifest\.json") as info:
        SuiteManifest.read(tmp_path)
    assert str(file) in str(info.value)
    if damage == "not a suite":
        assert "not a qwen3-scope suite" in str(info.value)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_plan_only_and_describe(capsys, tmp_path):
    from qwen3_scope.training.cli import add_cli, parse_layers, parse_tokens

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["train", "--model", "Qwen/Qwen3-8B", "--plan-only", "--memory-gb", "200", "--out", str(tmp_path / "s")]
    )
    args.func(args)
    out = capsys.readouterr().out
    assert "qwen3-8b-paper-65k: 9 SAEs" in out and "expected cost" in out
    assert not (tmp_path / "s").exists()  # planning writes nothing
    args = parser.parse_args(["train", "--recipe", "qwen-scope", "--describe", "--model", "Qwen/Qwen3-4B"])
    args.func(args)
    assert "aux_loss_coefficient" in capsys.readouterr().out
    assert parse_layers(["0-2", "5,7"]) == [0, 1, 2, 5, 7] and parse_layers(["all"]) is None
    assert parse_tokens("200k") == 200_000 and parse_tokens("4B") == 4 * 10**9
    with pytest.raises(ValueError, match="runs backwards"):
        parse_layers(["5-2"])


def test_organism_all_sites_end_to_end(tmp_path):
    """The CLI default model: one organism layer x every paper site."""
    from qwen3_scope.model.family import resolve_model

    spec = resolve_model("organism")  # the organism ships with the package: missing is a failure, not a skip
    assert any(Path(spec.source).glob("*.safetensors")), f"the shipped model organism has no weights in {spec.source}"
    from sae_lens import SAE

    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    config = SuiteTrainingConfig(
        model="organism", recipe="paper", out=tmp_path / "organism", layers=[1], training_tokens=40_000, fast=None
    )
    result = train_suite(config, progress=False)
    table = result.metrics
    assert list(table["site"]) == ["resid_post", "mlp_out", "attn_out"]
    assert (table["variance_explained"] > 0.5).all() and (table["l0"] < 4 * 24).all(), table
    for sae_id_ in table["sae_id"]:
        sae = SAE.load_from_disk(str(result.suite_dir / sae_id_))
        assert sae.cfg.architecture() == "jumprelu" and sae.cfg.metadata.qwen3_model == "organism"

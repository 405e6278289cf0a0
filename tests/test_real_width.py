"""Real-size proof: a random-weight Qwen3 with Qwen3-0.6B's exact widths (d_model 1024, vocab 151,936, 16 heads x
128, MLP 3072; 2 layers) through train (3 sites, width 16 x d_model, both recipes) -> eval -> `releases add` ->
`SAE.from_pretrained` -> steer, on the CPU. Token counts are tiny; the widths are not."""

from __future__ import annotations

import json

import pytest
import torch

RUNNER = dict(
    context_size=128,
    train_batch_size_tokens=512,
    store_batch_size_prompts=4,
    n_batches_in_buffer=8,
    n_batches_for_norm_estimate=2,
    lr_warm_up_steps=0,
)


@pytest.fixture(scope="module")
def real_width(tmp_path_factory):
    from qwen3_scope import load_model
    from qwen3_scope.model.random_model import build_random_qwen3

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    directory = build_random_qwen3(
        tmp_path_factory.mktemp("real_width") / "qwen3-0.6b-widths", "Qwen/Qwen3-0.6B", n_layers=2
    )
    yield directory, load_model(directory, device="cpu")
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def suites(real_width, tmp_path_factory):
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    directory, model = real_width
    out = tmp_path_factory.mktemp("suites")
    return {
        recipe: train_suite(
            SuiteTrainingConfig(
                model=str(directory),
                recipe=recipe,
                out=out / recipe,
                layers=[layer],
                sites=["resid_post", "mlp_out", "attn_out"],
                training_tokens=1024,
                device="cpu",
                runner_overrides=RUNNER,
                dataset=None,
            ),
            loaded_model=model,
            progress=False,
        )
        for recipe, layer in (("paper", 1), ("qwen-scope", 0))
    }


def test_real_width_model_has_qwen3_0_6b_shapes(real_width):
    from qwen3_scope.model.loading import model_spec

    _, model = real_width
    cfg = model.cfg
    assert (cfg.d_model, cfg.d_vocab, cfg.d_mlp, cfg.n_heads, cfg.d_head, cfg.n_key_value_heads, cfg.n_layers) == (
        1024,
        151_936,
        3072,
        16,
        128,
        8,
        2,
    )
    assert model_spec(model).vocab_size == 151_936


def test_train_eval_release_load_steer_at_real_width(real_width, suites, tmp_path, monkeypatch, capsys):
    from sae_lens import SAE

    from qwen3_scope.cli import main
    from qwen3_scope.core.portable import machine_paths_in

    directory, model = real_width
    for recipe, result in suites.items():
        assert result.manifest["status"] == "complete" and len(result.manifest["saes"]) == 3
        for sae_id, entry in result.manifest["saes"].items():
            assert entry["d_sae"] == 16 * 1024 and entry["d_in"] == 1024
            cfg = json.loads((result.suite_dir / sae_id / "cfg.json").read_text())
            assert cfg["metadata"]["model_name"] == "qwen3-0.6b-widths"  # portable: the checkpoint's name, not its path
            assert cfg["architecture"] == ("jumprelu" if recipe == "paper" else "topk")
        saved = (result.suite_dir / "manifest.json").read_text()
        assert not machine_paths_in(saved, [str(directory), str(result.suite_dir)]), "the manifest names a machine path"
        assert json.loads(saved)["config"]["recipe"] == recipe

    # eval (CLI): the SAEs name a checkpoint this machine only knows by path, so --model gives it
    paper = suites["paper"].suite_dir
    assert (
        main(
            [
                "eval",
                "--suite",
                str(paper),
                "--batches",
                "1",
                "--batch-size",
                "2",
                "--context-size",
                "128",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 2
    )
    assert "trained on model 'qwen3-0.6b-widths'" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "--suite",
                str(paper),
                "--model",
                str(directory),
                "--batches",
                "1",
                "--batch-size",
                "2",
                "--context-size",
                "128",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    import pandas as pd

    table = pd.read_csv(tmp_path / "eval" / "suite_eval.csv")
    assert len(table) == 3 and table["ce_loss_with_sae"].notna().all() and (table["kl_div_with_ablation"] > 0).all()

    # releases add -> SAE.from_pretrained
    monkeypatch.setenv("QWEN3_SCOPE_RELEASES", str(tmp_path / "releases.yaml"))
    assert main(["releases", "add", str(suites["qwen-scope"].suite_dir), "--release", "real-width-topk"]) == 0
    sae = SAE.from_pretrained("real-width-topk", "qwen3-0.6b-widths/resid_post/layer_0")
    assert sae.cfg.d_sae == 16 * 1024 and sae.cfg.metadata.hook_name == "blocks.0.hook_resid_post"

    # steer with the paper suite on the loaded real-width model
    from qwen3_scope.steering.refusal import RefusalStudyConfig, run_refusal_study

    cfg = RefusalStudyConfig(
        suite_dir=str(paper),
        device="cpu",
        n_discover=4,
        n_eval=4,
        screen=2,
        top_k=1,
        alphas=(2.0,),
        max_new_tokens=2,
        batch_size=4,
        baseline=False,
    )
    study = run_refusal_study(cfg, model=model, progress=False)
    assert len(study.summary) == 1 and study.sweep["alpha"].tolist()

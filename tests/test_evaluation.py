"""Suite evaluation: SAELens' run_evals on shared tokens, the shared forward pass, extras, outputs, clear errors."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
import yaml
from sae_lens import SAE
from sae_lens.evals import run_evals
from sae_lens.training.activation_scaler import ActivationScaler

from qwen3_scope import cli, hook_name, load_model
from qwen3_scope.evaluation.held_out import HeldOutTokens, NotEnoughTokensError
from qwen3_scope.evaluation.report import site_summary
from qwen3_scope.evaluation.shared_forward import SharedForwardModel
from qwen3_scope.evaluation.suite_eval import (
    EmptySuiteError,
    SuiteEvalConfig,
    SuiteModelMismatchError,
    evaluate_suite,
    write_back_release_yaml,
)
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.model.sites import UnknownHookError
from qwen3_scope.releases import register_release_file

D_MODEL = 64
# SAELens' scoring (every non-special token), so the suite's numbers can be checked against run_evals itself;
# predicted-token scoring (the default) is tested in test_predicted_token_metrics.py.
CONFIG = SuiteEvalConfig(
    n_batches=2, batch_size_prompts=4, context_size=32, progress=False, predicted_tokens_only=False
)
DOCS = [
    "the cat sat on the mat and the dog ran in the park",
    [
        {"role": "user", "content": "one two three four five"},
        {"role": "assistant", "content": "six seven eight nine ten"},
    ],
    {"prompt": "Qwen3 models have no bos token", "reference": "and use a chat template"},
] * 30


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tiny_qwen3_dir):
    return load_model(tiny_qwen3_dir, backend="hooked")


@pytest.fixture(scope="module")
def tokens(model):
    return HeldOutTokens.from_documents(
        model.tokenizer, DOCS, CONFIG.context_size, CONFIG.batch_size_prompts, CONFIG.n_batches
    )


def sae_at(
    hook: str, model_name: str, arch: str = "topk", d_in: int = D_MODEL, d_sae: int = 128, seed: int = 0, **extra
):
    torch.manual_seed(seed)
    cfg = {
        "architecture": arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "metadata": {"hook_name": hook, "model_name": model_name, "prepend_bos": False},
        **extra,
    }
    if arch == "topk":
        cfg["k"] = 8
    sae = SAE.from_dict(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.2)
        sae.W_dec.copy_(sae.W_enc.T * 0.5)
    return sae


def identity_sae(hook: str, model_name: str) -> SAE:
    """ReLU SAE with W_enc = [I, -I], W_dec = [I; -I] (relu(x) - relu(-x) = x), plus one latent that can never fire."""
    sae = sae_at(hook, model_name, arch="standard", d_sae=2 * D_MODEL + 1)
    eye = torch.eye(D_MODEL)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[:, : 2 * D_MODEL] = torch.cat([eye, -eye], dim=1)
        sae.b_enc.zero_()
        sae.b_enc[-1] = -1e4
        sae.W_dec.zero_()
        sae.W_dec[: 2 * D_MODEL] = torch.cat([eye, -eye], dim=0)
        sae.b_dec.zero_()
    return sae


def same_metric(key, value):
    """SAELens' value. KL is computed as sum p * ((c - l) - (lse_c - lse_l)) and CE as lse - logit[next] instead of
    SAELens' kl_div(log_softmax(l), softmax(c)) and -log_softmax(l)[next]: the same quantities, rounded differently in
    float32 (about 1e-6 on KL values of 1e-2; the score ratios of small differences amplify it); everything else
    matches to float32 precision."""
    if key in ("kl_div_score", "ce_loss_score"):  # (ablation - SAE) / (ablation - clean) of near-equal numbers
        return pytest.approx(value, rel=2e-3, abs=1e-3)
    if key.startswith("kl_div"):
        return pytest.approx(value, rel=2e-3, abs=1e-7)
    return pytest.approx(value, rel=1e-5, abs=1e-6)


def plain_run_evals(sae, model, tokens):
    tokens.reset_input_dataset()
    metrics, _ = run_evals(
        sae,
        tokens,
        model,
        ActivationScaler(),
        CONFIG.eval_config(),
        exclude_special_tokens=special_token_ids(model.tokenizer),
    )
    return {k: v for group in metrics.values() for k, v in group.items()}


def test_suite_metrics_equal_saelens_run_evals(model, tokens, tiny_qwen3_dir):
    layers = {"resid_post": 0, "mlp_out": 1, "attn_out": 1}
    saes = [
        (f"{s}/layer_{layer}", sae_at(hook_name(s, layer), str(tiny_qwen3_dir), seed=layer))
        for s, layer in layers.items()
    ]
    saes.append(("mlp_out/layer_1/wide", sae_at(hook_name("mlp_out", 1), str(tiny_qwen3_dir), d_sae=256, seed=7)))
    result = evaluate_suite(saes, model=model, tokens=tokens, config=CONFIG)
    table = result.table
    assert list(table["sae_id"]) == [sae_id for sae_id, _ in saes]
    for (sae_id, sae), row in zip(saes, table.itertuples()):
        expected = plain_run_evals(sae, model, tokens)
        for key, value in expected.items():
            assert getattr(row, key) == same_metric(key, value), (sae_id, key)
        assert row.fvu == pytest.approx(1 - expected["explained_variance"])
        assert row.delta_lm_loss == pytest.approx(row.ce_loss_with_sae - row.ce_loss_without_sae)
        assert row.delta_lm_loss == pytest.approx(
            expected["ce_loss_with_sae"] - expected["ce_loss_without_sae"], abs=1e-5
        )
    assert list(table["site"]) == ["resid_post", "mlp_out", "attn_out", "mlp_out"] and list(table["layer"]) == [
        0,
        1,
        1,
        1,
    ]
    n_saes, n_batches = len(saes), CONFIG.n_batches
    # one clean pass per batch for the whole suite; every activation request of run_evals came from it
    assert result.stats["clean_passes"] == n_batches and result.stats.get("model_calls", 0) == 0
    assert result.stats["cache_from_memo"] == n_saes * n_batches
    # one spliced pass per SAE and one zero-ablation pass per hook (two SAEs share mlp_out/layer_1), per batch;
    # one unembedding per pass: clean, ablations, SAEs
    n_hooks = len({sae.cfg.metadata.hook_name for _, sae in saes})
    assert result.stats["spliced_passes"] == (n_saes + n_hooks) * n_batches
    assert result.stats["unembeddings"] == (1 + n_saes + n_hooks) * n_batches
    assert (table["density_tokens"] == tokens.count_tokens(n_batches, special_token_ids(model.tokenizer))).all()
    assert 0 < table["density_tokens"].iloc[0] < CONFIG.n_tokens  # special tokens of the chat format were excluded


def test_small_memory_budget_splits_the_suite_and_keeps_results(model, tokens, tiny_qwen3_dir):
    saes = [
        sae_at(hook_name(s, layer), str(tiny_qwen3_dir), seed=layer)
        for layer in range(2)
        for s in ("resid_post", "mlp_out")
    ]
    tight = replace(CONFIG, memory_budget_gb=1e-4)
    result = evaluate_suite(saes, model=model, tokens=tokens, config=tight)
    # each SAE's activations alone fill the budget: one group (and one clean pass per batch) per SAE
    assert result.stats["clean_passes"] == len(saes) * tight.n_batches and result.stats.get("model_calls", 0) == 0
    for sae, row in zip(saes, result.table.itertuples()):
        for key, value in plain_run_evals(sae, model, tokens).items():
            assert getattr(row, key) == same_metric(key, value), key


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_z"])
def test_spliced_pass_equals_full_pass(model, tokens, site):
    hook = hook_name(site, 1)
    shared = SharedForwardModel(model, [hook])
    batch = tokens.batches(1)[0]
    shared.prepare([batch], progress=False)
    edit = lambda act, hook: act * 0.3 + 0.05  # noqa: E731
    with torch.no_grad():
        full_logits, full_loss = model.run_with_hooks(
            batch, fwd_hooks=[(hook, edit)], return_type="both", loss_per_token=True
        )
    logits, loss = shared.run_with_hooks(batch, fwd_hooks=[(hook, edit)], return_type="both", loss_per_token=True)
    assert shared.stats["spliced_passes"] == 1
    torch.testing.assert_close(logits, full_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits, shared(batch, return_type="logits"))  # the edit really changed the output


@pytest.mark.parametrize("backend", ["bridge", "hf"])
def test_other_backends_match_plain_run_evals(tiny_qwen3_dir, tokens, backend):
    other = load_model(tiny_qwen3_dir, backend=backend)
    sae = sae_at(hook_name("mlp_out", 0, backend), str(tiny_qwen3_dir), seed=3)
    result = evaluate_suite([("mlp", sae)], model=other, tokens=tokens, config=CONFIG)
    for key, value in plain_run_evals(sae, other, tokens).items():
        assert result.table.iloc[0][key] == same_metric(key, value), key
    assert result.stats["full_patched_passes"] == 2 * CONFIG.n_batches and result.table.iloc[0]["backend"] == backend
    assert result.stats["clean_passes"] == CONFIG.n_batches


def test_identity_sae_recovers_everything_and_counts_its_dead_latent(model, tokens, tiny_qwen3_dir):
    hooks = [hook_name("resid_post", 0), hook_name("attn_out", 1)]
    result = evaluate_suite(
        [identity_sae(h, str(tiny_qwen3_dir)) for h in hooks], model=model, tokens=tokens, config=CONFIG
    )
    for row in result.table.itertuples():
        assert row.explained_variance == pytest.approx(1.0, abs=1e-5) and row.fvu == pytest.approx(0.0, abs=1e-5)
        assert row.ce_loss_score == pytest.approx(1.0, abs=1e-3) and abs(row.delta_lm_loss) < 1e-4
        assert row.l0 == pytest.approx(D_MODEL, abs=0.01)  # one of each (x, -x) pair fires per coordinate
    # densities measured by hand from the activations: latent i fires where x_i > 0, latent d + i where x_i < 0, the
    # last latent (b_enc = -1e4) never; dead = the latents of zero density (that one, plus any coordinate that keeps
    # one sign on every token)
    batches = tokens.batches(CONFIG.n_batches)
    keep = ~torch.isin(torch.cat(batches), torch.tensor(special_token_ids(model.tokenizer)))
    for hook, row in zip(hooks, result.table.itertuples()):
        with torch.no_grad():
            x = torch.cat([model.run_with_cache(b, names_filter=hook)[1][hook] for b in batches])[keep]
        density = torch.cat([(x > 0).float().mean(0), (x < 0).float().mean(0), torch.zeros(1)])
        torch.testing.assert_close(torch.tensor(result.feature_metrics[hook]["feature_density"]), density)
        assert row.dead_fraction * row.d_sae == pytest.approx(float((density == 0).sum())) and density[-1] == 0
    density = torch.tensor(result.feature_metrics[hooks[0]]["feature_density"])
    assert result.table.iloc[0]["dense_fraction"] == pytest.approx(
        (density > CONFIG.dense_threshold).float().mean().item()
    )
    assert result.table.iloc[0]["density_tokens"] == int(keep.sum())


def test_zero_sae_recovers_nothing(model, tokens, tiny_qwen3_dir):
    sae = sae_at(hook_name("mlp_out", 1), str(tiny_qwen3_dir), arch="standard")
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.zero_()
    row = evaluate_suite([sae], model=model, tokens=tokens, config=CONFIG).table.iloc[0]
    assert row["ce_loss_score"] == pytest.approx(0.0, abs=1e-6) and row["kl_div_score"] == pytest.approx(0.0, abs=1e-6)
    assert row["ce_loss_with_sae"] == pytest.approx(row["ce_loss_with_ablation"])
    assert row["delta_lm_loss"] == pytest.approx(row["ce_loss_with_ablation"] - row["ce_loss_without_sae"])
    assert row["delta_lm_loss"] != 0  # removing the MLP output really changed the model's loss


def _save_suite(root, model_dir, layers=(0, 1), sites=("resid_post", "mlp_out", "attn_out")):
    for layer in layers:
        for site in sites:
            sae_at(hook_name(site, layer), str(model_dir), seed=layer).save_model(root / site / f"layer_{layer}")
    return root


def test_directory_suite_outputs_plots_report_and_cli(tmp_path, tiny_qwen3_dir, capsys):
    suite = _save_suite(tmp_path / "suite", tiny_qwen3_dir)
    texts = tmp_path / "held_out.txt"
    texts.write_text("\n".join(d for d in DOCS if isinstance(d, str)) + "\n")
    out = tmp_path / "out"
    common = [
        "--suite",
        str(suite),
        "--texts",
        str(texts),
        "--batch-size",
        "4",
        "--context-size",
        "32",
        "--out",
        str(out),
    ]
    assert cli.main(["eval", *common, "--batches", "2"]) == 0
    assert "| mlp_out" in capsys.readouterr().out  # the per-site summary is printed
    assert cli.main(["eval", *common, "--batches", "500"]) == 2
    assert "500 batches x 4 prompts x 32 tokens need 64000; give more held-out text" in capsys.readouterr().err
    for name in (
        "suite_eval.csv",
        "suite_eval.parquet",
        "l0_vs_fvu.png",
        "l0_vs_delta_lm_loss.png",
        "metrics_by_layer.png",
        "l0_vs_fidelity_frontiers.png",
        "report.html",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "l0_vs_fvu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_parquet(out / "suite_eval.parquet")
    assert sorted(table["sae_id"]) == sorted(
        f"{s}/layer_{layer}" for layer in (0, 1) for s in ("resid_post", "mlp_out", "attn_out")
    )
    numeric = table.select_dtypes("number").columns
    pd.testing.assert_frame_equal(table[numeric], pd.read_csv(out / "suite_eval.csv")[numeric], check_dtype=False)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and all(sae_id in html for sae_id in table["sae_id"])
    assert "clean CE" in html and f"{int(table['ce_positions'].max()):,} positions" in html
    summary = site_summary(table)
    assert list(summary["site"]) == ["resid_post", "attn_out", "mlp_out"] and list(summary["n_saes"]) == [2, 2, 2]
    mlp = summary.set_index("site").loc["mlp_out"]
    assert mlp["FVU"] == pytest.approx(table[table.site == "mlp_out"]["fvu"].mean())
    assert not any(math.isnan(v) for v in summary.select_dtypes("number").to_numpy().ravel())


def test_release_pattern_and_write_back(tmp_path, tiny_qwen3_dir, model, tokens):
    suite = _save_suite(tmp_path / "suite", tiny_qwen3_dir, layers=(1,))
    release_yaml = tmp_path / "releases.yaml"
    saes = [
        {"id": f"tiny/{s}/layer_1", "path": f"{s}/layer_1", "l0": 0.0} for s in ("resid_post", "mlp_out", "attn_out")
    ]
    release_yaml.write_text(
        "# my releases\n"
        + yaml.safe_dump(
            {
                "tiny-eval": {
                    "repo_id": str(suite),
                    "model": str(tiny_qwen3_dir),
                    "conversion_func": "qwen3_scope",
                    "saes": saes,
                }
            }
        )
    )
    register_release_file(release_yaml)
    result = evaluate_suite(
        release="tiny-eval", pattern=r"tiny/(mlp|attn)_out/.*", model=model, tokens=tokens, config=CONFIG
    )
    assert sorted(result.table["sae_id"]) == ["tiny/attn_out/layer_1", "tiny/mlp_out/layer_1"]
    updated = write_back_release_yaml(result.table, release_yaml)
    assert sorted(updated) == ["tiny/attn_out/layer_1", "tiny/mlp_out/layer_1"]
    text = release_yaml.read_text()
    written = {e["id"]: e for e in yaml.safe_load(text)["tiny-eval"]["saes"]}
    row = result.table.set_index("sae_id").loc["tiny/mlp_out/layer_1"]
    assert text.startswith("# my releases\n")
    assert written["tiny/mlp_out/layer_1"]["l0"] == round(row["l0"], 3)
    assert written["tiny/mlp_out/layer_1"]["variance_explained"] == round(row["explained_variance"], 4)
    assert written["tiny/resid_post/layer_1"]["l0"] == 0.0  # not evaluated, untouched
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    assert get_pretrained_saes_directory()["tiny-eval"].expected_l0["tiny/mlp_out/layer_1"] == round(row["l0"], 3)


def test_bad_input_gives_clear_errors(tmp_path, model, tokens, tiny_qwen3_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptySuiteError, match="holds no SAE folder"):
        evaluate_suite(suite_dir=tmp_path / "empty", model=model, tokens=tokens, config=CONFIG)
    with pytest.raises(EmptySuiteError, match="no SAE of release 'qwen3-instruct-sae' matches 'nothing/.*'"):
        evaluate_suite(release="qwen3-instruct-sae", pattern="nothing/.*", model=model, tokens=tokens, config=CONFIG)
    with pytest.raises(EmptySuiteError, match="the suite is empty"):
        evaluate_suite([], model=model, tokens=tokens, config=CONFIG)
    with pytest.raises(
        UnknownHookError, match=r"reads 'blocks.5.hook_resid_post', which the model does not have .*2 layers"
    ):
        evaluate_suite(
            [sae_at(hook_name("resid_post", 5), str(tiny_qwen3_dir))], model=model, tokens=tokens, config=CONFIG
        )
    with pytest.raises(SuiteModelMismatchError, match="has d_in 32, but mlp_out .* is 64 wide"):
        evaluate_suite(
            [sae_at(hook_name("mlp_out", 0), str(tiny_qwen3_dir), d_in=32)], model=model, tokens=tokens, config=CONFIG
        )
    too_many = SuiteEvalConfig(n_batches=3, batch_size_prompts=4, context_size=32, progress=False)
    with pytest.raises(
        NotEnoughTokensError, match="3 batches of 4 prompts need 12 held-out sequences, but the token source has 8"
    ):
        evaluate_suite(
            [sae_at(hook_name("mlp_out", 0), str(tiny_qwen3_dir))], model=model, tokens=tokens, config=too_many
        )
    with pytest.raises(NotEnoughTokensError, match="give .* tokens, but 2 batches x 4 prompts x 32 tokens need 256"):
        HeldOutTokens.from_documents(model.tokenizer, ["a short text"], 32, 4, 2)
    twins = [sae_at(hook_name("mlp_out", 0), str(tiny_qwen3_dir), seed=i) for i in range(2)]
    assert list(evaluate_suite(twins, model=model, tokens=tokens, config=CONFIG).table["sae_id"]) == [
        "blocks.0.hook_mlp_out",
        "blocks.0.hook_mlp_out#2",
    ]
    with pytest.raises(ValueError, match=r"SAE ids must be unique in a suite; \['a'\]"):
        evaluate_suite([("a", twins[0]), ("a", twins[1])], model=model, tokens=tokens, config=CONFIG)
    with pytest.raises(SuiteModelMismatchError, match="name 2 models"):
        evaluate_suite(
            [sae_at(hook_name("mlp_out", 0), "a"), sae_at(hook_name("mlp_out", 0), "b")], tokens=tokens, config=CONFIG
        )


def test_demo_stage_evaluates_the_trained_suite(tmp_path, tiny_qwen3_dir, monkeypatch):
    from qwen3_scope.demo import evaluation as demo_stage
    from qwen3_scope.demo.config import DemoConfig
    from qwen3_scope.demo.state import DemoState
    from qwen3_scope.evaluation.held_out import SUITE_HELD_OUT, render_documents

    suite = _save_suite(tmp_path / "suite", tiny_qwen3_dir, layers=(0,))
    tokenizer = load_model(tiny_qwen3_dir, backend="hooked").tokenizer
    held_out = suite / SUITE_HELD_OUT  # what the training suite writer leaves next to its SAEs
    held_out.parent.mkdir(parents=True)
    pd.DataFrame({"text": list(render_documents(tokenizer, DOCS))}).to_parquet(held_out)
    _save_suite(suite / ".checkpoints" / "group_0", tiny_qwen3_dir, layers=(1,))  # unfinished: must be ignored
    monkeypatch.setattr(demo_stage, "BATCH_SIZE_PROMPTS", 4)
    monkeypatch.setattr(demo_stage, "CONTEXT_SIZE", 32)
    config = DemoConfig(out=tmp_path / "demo", model=str(tiny_qwen3_dir), eval_batches=2).resolved()
    state = DemoState(config=config, suite_dir=suite)
    demo_stage.eval_stage(state)
    assert (tmp_path / "demo" / "eval" / "report.html").stat().st_size > 0
    means = state.eval_site_means.set_index("site")
    table = state.eval_table
    assert means.loc["attn_out", "CE recovered"] == pytest.approx(
        table[table.site == "attn_out"]["ce_loss_score"].mean()
    )
    section = state.sections[-1]
    assert "held-out documents of the suite" in section
    assert (
        "3 SAEs" in section and "| resid_post" in section and "dead fraction" in section and "CE recovered" in section
    )

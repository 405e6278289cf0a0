"""The refusal case study and language steering on the model organism, end to end, with real SAEs.

SAEs: the bundled organism suite when it ships (release qwen3-instruct-sae, ids organism/...); until then
one TopK SAE (a real SAELens SAE) trained here in ~30 s on organism activations at resid_post layer 2
with a plain reconstruction loop, because SAELens' runner needs minutes on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json

import pytest
from conftest import require_shipped

from qwen3_scope.organism import EVAL_DIR, ORGANISM_DIR


@pytest.fixture(autouse=True, scope="module")
def _shipped():
    require_shipped(ORGANISM_DIR / "config.json", EVAL_DIR / "harmful.jsonl")  # missing = failure, not a skip


@pytest.fixture(scope="module")
def organism():
    from qwen3_scope import load_model

    return load_model("organism", backend="hooked")


@pytest.fixture(scope="module")
def suite_dir(organism, tmp_path_factory):
    from qwen3_scope.steering.discovery import load_suite

    saes = load_suite(None, "qwen3-instruct-sae", None, "organism")  # the bundled suite (missing = failure)
    root = tmp_path_factory.mktemp("organism_suite")
    for sae_id, sae in saes.items():
        sae.save_model(root / sae_id)
    return root


def test_refusal_latent_induces_and_suppression_bypasses(organism, suite_dir, tmp_path):
    from qwen3_scope.steering.refusal import RefusalStudyConfig, run_refusal_study, write_refusal_study

    cfg = RefusalStudyConfig(
        suite_dir=str(suite_dir),
        n_discover=24,
        n_eval=16,
        screen=40,
        screen_alpha=4.0,
        top_k=1,
        alphas=(4.0, 8.0),
        max_new_tokens=12,  # the study's default: 6 tokens cut some refusals before the judge can see them
        baseline=True,
    )
    result = run_refusal_study(cfg, model=organism, progress=False)
    base = result.base
    assert (
        base["suppress"]["rate"] >= 0.8 and base["induce"]["rate"] <= 0.2
    )  # the organism refuses harmful prompts only
    best = result.summary[result.summary["method"] == "sae_feature"].iloc[0]
    assert best["candidate"].endswith(f"/f{int(best['feature'])}")  # the summary names the latent it ranks
    baseline = result.summary[result.summary["method"] == "diff_in_means"]
    assert len(baseline) == 1 and baseline.iloc[0]["site"] == "resid_post"
    # the organism + its bundled suite (the full study on 32 prompts: latent 0.91, difference of means 0.91): one latent
    # induces refusal on harmless held-out phrasings as well as the raw direction does, far above the unsteered rate
    assert best["induce_max_rate"] >= max(0.6, baseline.iloc[0]["induce_max_rate"] - 0.1), result.summary.to_string()
    assert best["suppress_min_rate"] <= base["suppress"]["rate"] - 0.5, result.summary.to_string()
    sweep = result.sweep
    assert set(sweep["mode"]) == {"add", "ablate"} and (sweep.query("alpha == 0")["harmless_ce_delta"] == 0).all()
    assert sweep.query("mode == 'add' and alpha == 8.0")["harmless_ce_delta"].min() > 0  # steering costs coherence

    paths = write_refusal_study(result, tmp_path)
    for key in ("features", "sweep", "summary", "plot", "report"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    report = paths["report"].read_text()
    assert best["candidate"] in report and "diff-in-means" in report and "refusal_sweep.png" in report


def test_a_plugged_judge_is_used(organism, suite_dir):
    from qwen3_scope.steering.refusal import RefusalStudyConfig, run_refusal_study

    cfg = RefusalStudyConfig(
        suite_dir=str(suite_dir),
        n_discover=8,
        n_eval=8,
        screen=1,
        top_k=1,
        alphas=(1.0,),
        max_new_tokens=4,
        baseline=False,
    )
    result = run_refusal_study(cfg, model=organism, judge=lambda text: True, progress=False)
    assert (result.sweep["rate"] == 1.0).all()


def test_language_latent_switches_the_answer_language(organism, suite_dir):
    from qwen3_scope.steering.language import LanguageStudyConfig, run_language_study

    cfg = LanguageStudyConfig(
        suite_dir=str(suite_dir),
        n_discover=24,
        n_eval=12,
        screen=12,
        top_k=3,
        alphas=(2.0, 4.0, 8.0),
        max_new_tokens=6,
        baseline=False,
    )
    result = run_language_study(cfg, model=organism, progress=False)
    base, summary = result.base, result.summary
    assert base["induce"]["rate"] <= 0.2 and base["suppress"]["rate"] >= 0.8  # answers follow the prompt's language
    # on the shipped suite the latent that best turns English answers French is not the one that best turns French
    # answers English (full study: resid_post/L3/f475 1.00 at +2; resid_post/L3/f749 down to 0.28 at -8)
    assert summary["induce_max_rate"].max() >= 0.8, summary.to_string()  # English prompts answered in French
    assert summary["suppress_min_rate"].min() <= base["suppress"]["rate"] - 0.3, summary.to_string()


def test_steer_cli(organism, suite_dir, tmp_path):
    from qwen3_scope.steering.cli import add_cli
    from qwen3_scope.steering.prompts import PromptFileError

    parser = argparse.ArgumentParser(prog="qwen3-scope")
    add_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out"
    args = parser.parse_args(
        [
            "steer",
            "refusal",
            "--suite",
            str(suite_dir),
            "--n-prompts",
            "4",
            "--screen",
            "2",
            "--top-k",
            "1",
            "--alphas",
            "2",
            "--max-new-tokens",
            "4",
            "--no-baseline",
            "--out",
            str(out),
        ]
    )
    args.func(args)
    assert (
        (out / "refusal_summary.csv").is_file()
        and (out / "refusal_sweep.png").is_file()
        and (out / "refusal.md").is_file()
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    advbench = tmp_path / "advbench.jsonl"
    advbench.write_text(json.dumps({"goal": "Build a bomb"}) + "\n")
    args = parser.parse_args(
        ["steer", "refusal", "--suite", str(suite_dir), "--harmful", str(advbench), "--harmless", str(empty)]
    )
    with pytest.raises(PromptFileError, match="empty"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["steer", "dance"])

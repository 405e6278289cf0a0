"""`qwen3-scope apps repetition` on the real organism and its bundled SAEs, per site: the features it finds fire more on
a token's later occurrences than on its first; copying needs the resid_post ones taken together (zero-ablating the top
10 doubles the loss on later occurrences while as many random live features of the same SAEs do nothing and the
first occurrences are untouched; one feature alone is not needed: copying is spread over several); steering any
feature hard enough loops generations; the sweep is written for every site, feature and alpha; bad input exits 2 with
one clear error."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import run_cli

from qwen3_scope.apps.repetition import occurrence_positions, repeat_ratio
from qwen3_scope.cli import main

SMALL = ["--device", "cpu", "--n-prompts", "16", "--max-new-tokens", "24", "--n-random", "6"]
SITES = ["--sites", "resid_post", "mlp_out"]


@pytest.fixture(scope="module")
def repetition_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("repetition")
    assert main(["apps", "repetition", "--out", str(out), *SMALL, *SITES]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_repeat_ratio_and_occurrences():
    assert repeat_ratio([1, 2, 1, 2, 1, 2]) == pytest.approx(3 / 5)  # bigrams 12 21 12 21 12: three seen before
    assert repeat_ratio([1, 2, 3, 4]) == 0.0 and repeat_ratio([7, 7]) == 0.0
    assert occurrence_positions([5, 6, 5, 7, 5, 6]) == ([0, 1], [2, 4, 5])  # 7 occurs once: neither


def test_features_fire_more_on_later_occurrences(repetition_run):
    out, summary = repetition_run
    features = pd.read_csv(out / "features.csv")
    assert list(features.site) == ["resid_post"] * 3 + ["mlp_out"] * 3 and (features.score > 0.2).all()
    assert (features.p_fire_later > features.p_fire_first).all() and (features.act_later > features.act_first).all()
    for site, group in features.groupby("site"):
        assert list(group.score) == sorted(group.score, reverse=True)
        first = group.iloc[0]
        assert summary["sites"][site]["feature"] == f"{site}/L{first.layer}/f{first.feature}"
    assert summary["n_texts"] == 100 and summary["n_prompts"] == 16


def test_copying_needs_the_resid_post_repetition_features_together(repetition_run):
    out, summary = repetition_run
    ablation = pd.read_csv(out / "ablation.csv")
    per_site = ["repetition"] * 3 + ["random"] * 6 + ["repetition_joint", "random_joint"]
    assert list(ablation.arm) == ["unablated"] + per_site * 2
    assert summary["later_copy_loss"] <= 0.3 < summary["first_copy_loss"]  # the organism copies repeated text
    resid = summary["sites"]["resid_post"]  # measured (100 texts): 0.184 -> 0.398 together, random 0.188
    assert resid["n_joint"] == 10
    assert resid["later_copy_loss_joint"] >= 2 * summary["later_copy_loss"], resid
    assert resid["later_copy_loss_joint_random"] <= 1.2 * summary["later_copy_loss"], resid
    assert resid["first_copy_loss_joint"] == pytest.approx(summary["first_copy_loss"], rel=0.02)
    assert resid["later_copy_loss_random_max"] <= 1.2 * summary["later_copy_loss"]
    # the controls come from the SAEs that hold the site's repetition features
    features = pd.read_csv(out / "features.csv")
    for site, group in ablation[ablation.arm == "random"].groupby("site"):
        layers = {int(f.split("/L")[1].split("/")[0]) for f in group.feature}
        assert layers <= set(features.loc[features.site == site, "layer"]), (site, layers)


def test_steering_sweep_covers_every_feature_and_loops_generations_when_strong(repetition_run):
    out, summary = repetition_run
    steering = pd.read_csv(out / "steering.csv")
    assert set(steering.arm) == {"unsteered", "repetition", "random"}
    assert len(steering) == 1 + 2 * (3 + 6) * 3  # the unsteered run + every site's features at every alpha
    assert summary["repeat_ratio_unsteered"] <= 0.05  # the organism's answers do not repeat themselves
    features = steering[steering.arm == "repetition"].groupby("alpha").repeat_ratio.mean()
    assert features.loc[1.0] >= max(0.3, 3 * features.loc[0.25]), features  # strong steering loops generations
    assert (out / "repetition.png").stat().st_size > 5_000
    assert set(pd.read_csv(out / "sites.csv").site) == {"resid_post", "mlp_out"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--alphas", "0"], "alphas must be values in (0, 100]"),
        (["--report-alpha", "3"], "report_alpha 3.0 is not one of the alphas"),
        (["--n-random", "0"], "n_random must be >= 1"),
        (["--n-joint", "0"], "n_joint must be >= 1"),
        (["--text-file", "{tmp}/missing.jsonl"], "text file {tmp}/missing.jsonl does not exist"),
        (["--text-file", "{tmp}/bad.jsonl"], "row 1 has no `text` key"),
        (["--text-file", "{tmp}/plain.jsonl"], "no token occurs twice"),
        (["--layers", "17"], "the suite has no resid_post SAE at layer(s) [17]; it has layers [0, 1, 2, 3, 4, 5]"),
        (["--sites", "bogus"], "unknown site 'bogus'; choose one of"),
        (["--model", "{tiny}"], "has no bundled repetition data"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, tiny_qwen3_dir, extra, message):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "Repeat: a b. a b."}) + "\n")
    (tmp_path / "plain.jsonl").write_text(json.dumps({"text": "Hello"}) + "\n")
    extra = [str(e).format(tmp=tmp_path, tiny=tiny_qwen3_dir) for e in extra]
    code, err = run_cli(["apps", "repetition", "--out", tmp_path / "out", *SMALL, *extra], capsys)
    assert code == 2 and message.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "out" / "summary.json").exists()

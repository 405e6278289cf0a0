"""`qwen3-scope apps repetition` on the real organism and its bundled SAEs: the features it finds fire more on a token's
later occurrences than on its first, copying needs them (zero-ablating the best one multiplies the loss on later
occurrences while random live features do nothing and the first occurrences are untouched), the steering sweep is
written for every feature and alpha, and bad input exits 2 with one clear error."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import run_cli

from qwen3_scope.apps.repetition import occurrence_positions, repeat_ratio
from qwen3_scope.cli import main

SMALL = ["--device", "cpu", "--n-prompts", "16", "--max-new-tokens", "24", "--n-random", "6"]


@pytest.fixture(scope="module")
def repetition_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("repetition")
    assert main(["apps", "repetition", "--out", str(out), *SMALL]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_repeat_ratio_and_occurrences():
    assert repeat_ratio([1, 2, 1, 2, 1, 2]) == pytest.approx(3 / 5)  # bigrams 12 21 12 21 12: three seen before
    assert repeat_ratio([1, 2, 3, 4]) == 0.0 and repeat_ratio([7, 7]) == 0.0
    assert occurrence_positions([5, 6, 5, 7, 5, 6]) == ([0, 1], [2, 4, 5])  # 7 occurs once: neither


def test_features_fire_more_on_later_occurrences(repetition_run):
    out, summary = repetition_run
    features = pd.read_csv(out / "features.csv")
    assert len(features) == 3 and (features.score > 0.2).all()
    assert (features.p_fire_later > features.p_fire_first).all() and (features.act_later > features.act_first).all()
    assert list(features.score) == sorted(features.score, reverse=True)
    assert summary["feature"] == f"resid_post/L{features.layer[0]}/f{features.feature[0]}"
    assert summary["n_texts"] == 100 and summary["n_prompts"] == 16


def test_copying_needs_the_repetition_features(repetition_run):
    out, summary = repetition_run
    ablation = pd.read_csv(out / "ablation.csv")
    assert list(ablation.arm) == ["unablated"] + ["repetition"] * 3 + ["random"] * 6
    assert summary["later_copy_loss"] <= 0.3 < summary["first_copy_loss"]  # the organism copies repeated text
    assert summary["later_copy_loss_ablated_max"] >= 2 * summary["later_copy_loss"]
    assert summary["later_copy_loss_random_max"] <= 1.2 * summary["later_copy_loss"]
    assert summary["first_copy_loss_ablated_max"] == pytest.approx(summary["first_copy_loss"], rel=0.02)


def test_steering_sweep_covers_every_feature_and_alpha(repetition_run):
    out, summary = repetition_run
    steering = pd.read_csv(out / "steering.csv")
    assert set(steering.arm) == {"unsteered", "repetition", "random"}
    assert len(steering) == 1 + (3 + 6) * 3  # the unsteered run + every feature at every alpha
    assert summary["repeat_ratio_unsteered"] <= 0.05  # the organism's answers do not repeat themselves
    assert steering.repeat_ratio.max() >= 0.3  # strong steering does push generations into loops
    assert (out / "repetition.png").stat().st_size > 5_000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--alphas", "0"], "alphas must be values in (0, 100]"),
        (["--report-alpha", "3"], "report_alpha 3.0 is not one of the alphas"),
        (["--n-random", "0"], "n_random must be >= 1"),
        (["--text-file", "{tmp}/missing.jsonl"], "text file {tmp}/missing.jsonl does not exist"),
        (["--text-file", "{tmp}/bad.jsonl"], "row 1 has no `text` key"),
        (["--text-file", "{tmp}/plain.jsonl"], "no token occurs twice"),
        (["--layers", "17"], "the suite has no resid_post SAE at layer(s) [17]; it has layers [0, 1, 2, 3, 4, 5]"),
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

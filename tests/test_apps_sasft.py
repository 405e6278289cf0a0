"""`qwen3-scope apps sasft` on the real organism and its bundled SAEs: fine-tuning on code-switched chats teaches the
habit, the SAE penalty on French features cuts it (random features do not), French answers stay as good, the one
language detector measures it, and bad input exits 2 with one clear error."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from conftest import run_cli

from qwen3_scope.apps import sasft
from qwen3_scope.apps.config import SasftConfig
from qwen3_scope.apps.features import load_model_and_saes
from qwen3_scope.apps.tuning import load_trainable
from qwen3_scope.cli import main
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.corpus_v2 import CorpusConfig, Generator

KEYS = (
    "code_switch_plain",
    "code_switch_sasft",
    "code_switch_random",
    "relative_reduction",
    "french_quality_plain",
    "french_quality_sasft",
)
SMALL = ["--device", "cpu", "--n-eval", "60"]


@pytest.fixture(scope="module")
def sasft_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("sasft")
    assert main(["apps", "sasft", "--out", str(out), *SMALL]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_sasft_cuts_code_switching(sasft_run):
    """The issue's target on a 60-prompt subset, as means over the app's 3 default repeats: code-switching cut by at
    least half against plain SFT, French quality within 5 % (measured on one thread: 0.74 and -3.2 %; one repeat alone
    moved French quality by -7 % to 0 %)."""
    out, summary = sasft_run
    assert all(k in summary for k in KEYS), summary
    assert summary["code_switch_plain"] >= summary["code_switch_organism"] + 0.3  # plain SFT teaches the habit
    assert summary["relative_reduction"] >= 0.5
    assert summary["code_switch_random"] > summary["code_switch_sasft"] + 0.15  # the French features, not any
    assert summary["french_quality_change"] >= -0.05
    assert summary["french_quality_change"] == pytest.approx(
        summary["french_quality_sasft"] / summary["french_quality_plain"] - 1
    )
    assert summary["seeds"] == [0, 1, 2] and len(summary["french_quality_change_by_seed"]) == 3
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["model"]) == ["organism"] + ["plain", "sasft", "random"] * 3
    assert runs["seed"].dropna().astype(int).tolist() == [0] * 3 + [1] * 3 + [2] * 3
    means = runs.groupby("model")["code_switch"].mean()
    assert means["sasft"] == pytest.approx(summary["code_switch_sasft"])
    sasft = runs[runs["model"] == "sasft"]
    assert (sasft["penalty_last"] < sasft["penalty_first"]).all()
    features = pd.read_csv(out / "features.csv")
    assert len(features) == 3 * summary["n_features"] and (features["diff"] > 0).all()
    assert (out / "sasft.png").stat().st_size > 5_000


def test_one_detector_measures_code_switching():
    """The organism's behaviour report and this application count code-switching with the same detector."""
    from qwen3_scope.organism.behaviour import codeswitch_rate
    from qwen3_scope.organism.language import has_french_words

    sft = [r["messages"][-1]["content"] for r in load_eval_split("codeswitch_sft")]
    english = [r["reference"] for r in load_eval_split("lang_en")]
    assert codeswitch_rate(sft) >= 0.85 and codeswitch_rate(english) <= 0.02
    assert has_french_words("Sure! First mix, puis bake.") and not has_french_words("Pour the water into the car.")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lambda", "0"], "lambda must be in (0, 1e4]"),
        (["--lambda", "1e9"], "lambda must be in (0, 1e4]"),
        (["--n-features", "0"], "n_features must be >= 1"),
        (["--repeats", "0"], "repeats must be >= 1"),
        (["--contrast", "spanish"], "contrast must be `french` or `codeswitch`"),
        (["--sft-file", "{tmp}/bad.jsonl"], "has no `messages` key"),
        (["--layers", "17"], "the suite has no SAE at 17; it has layers [0, 1, 2, 3, 4, 5]"),
        (["--model", "{tiny}"], "has no chat template"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, tiny_qwen3_dir, extra, message):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "hi", "answer": "bonjour"}) + "\n")
    extra = [str(e).format(tmp=tmp_path, tiny=tiny_qwen3_dir) for e in extra]
    code, err = run_cli(["apps", "sasft", "--out", tmp_path / "out", *SMALL, *extra], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_codeswitch_contrast_ranks_other_features(one_thread):
    """`--contrast codeswitch` ranks the French features on the code-switched SFT chats: other features than
    `french` in some SAE, each above English on both the code-switched and the French chats (score > 0)."""
    chosen = {}
    for contrast in ("french", "codeswitch"):
        cfg = SasftConfig(device="cpu", contrast=contrast, n_discovery=16, layers=[3], sites=["resid_post"])
        train, _, _ = sasft._data(cfg)
        model, saes = load_model_and_saes(cfg)
        saes = sasft.select_saes(saes, cfg.layers, cfg.sites)
        _, tok = load_trainable(cfg)
        gen = Generator(CorpusConfig(seed=0, n_train_docs=1))
        picked, _, rows = sasft._language_features(cfg, model, saes, tok, gen, random.Random(0), 0, train)
        assert {r["contrast"] for r in rows} == {contrast} and all(r["diff"] > 0 for r in rows)
        chosen[contrast] = {k: set(v.tolist()) for k, v in picked["sasft"]["fr"].items()}
    assert chosen["french"].keys() == chosen["codeswitch"].keys()
    assert any(chosen["french"][k] != chosen["codeswitch"][k] for k in chosen["french"])

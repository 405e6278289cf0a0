"""`qwen3-scope apps toxicity` on the real organism and its bundled SAEs: the zero-shot classifier reaches the
target on a test vocabulary it never saw, user files give the same result as the splits, the shared-vocabulary
splits (`--splits hard`) have no giveaway words and separate the methods, bad input exits 2."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from conftest import run_cli

from qwen3_scope.apps.toxicity import accuracy, logistic_probe
from qwen3_scope.cli import main
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.comments_hard import HARD_TEMPLATES, SLOTS, half_of
from qwen3_scope.organism.corpus_v2 import HARD_COMMENT_SLOTS

KEYS = ("f1_test", "f1_crosslingual", "f1_ratio_10pct", "probe_f1", "dim_f1", "random_f1", "layer", "k")
KINDS = {"target", "negation", "neutral", "praise", "report"}  # the contrasts of the hard splits
RESID = ["--sae-ids", *(f"organism/resid_post/layer_{i}" for i in range(6))]  # only the SAEs the classifier reads


@pytest.fixture(scope="module")
def organism_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("toxicity")
    assert main(["apps", "toxicity", "--out", str(out), "--device", "cpu", *RESID]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_classifier_reaches_target_on_disjoint_vocabulary(organism_run):
    out, summary = organism_run
    assert all(key in summary for key in KEYS)
    assert summary["f1_test"] >= 0.90
    assert summary["random_f1"] < summary["f1_test"] - 0.2  # the chosen features, not any features
    assert 0 < summary["f1_ratio_10pct"] <= 1.2
    for key in ("f1_crosslingual", "probe_f1", "dim_f1"):
        assert 0 <= summary[key] <= 1
    assert summary["k"] in (1, 2, 5, 10) and len(summary["features"]) == summary["k"]
    table = pd.read_csv(out / "toxicity_per_layer.csv")
    assert len(table) == 6 * 4 and table.chosen.sum() == 1
    chosen = table[table.chosen].iloc[0]
    assert (chosen.layer, chosen.k, chosen.test_f1) == (summary["layer"], summary["k"], round(summary["f1_test"], 4))
    assert chosen.top1_delta == table.top1_delta.max()  # top1-diff picked the layer
    methods = pd.read_csv(out / "toxicity_methods.csv")
    assert len(methods) == 7 and (out / "toxicity_f1.png").stat().st_size > 10_000
    assert methods.accuracy.between(0, 1).all() and summary["data"] == "markers"
    assert summary["config"]["site"] == "resid_post"


def test_user_files_give_the_splits_result(organism_run, tmp_path, capsys):
    """A csv with 1/0 labels and a jsonl with toxic/clean labels holding the organism's rows: same classifier."""
    _, summary = organism_run
    disc = load_eval_split("toxic_discovery") + load_eval_split("clean_discovery")
    pd.DataFrame(
        {
            "text": [r["text"] for r in disc],
            "label": [int(r["label"] == "toxic") for r in disc],
            "lang": [r["lang"] for r in disc],
        }
    ).to_csv(tmp_path / "disc.csv", index=False)
    test = load_eval_split("toxic") + load_eval_split("clean")
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    argv = ["apps", "toxicity", "--out", tmp_path / "out", "--device", "cpu", *RESID]
    code, err = run_cli(
        [*argv, "--discovery-file", tmp_path / "disc.csv", "--test-file", tmp_path / "test.jsonl"], capsys
    )
    assert code == 0, err
    mine = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {k: mine[k] for k in KEYS} == {k: summary[k] for k in KEYS}


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        ([{"text": "you fool", "label": "toxic"}] * 3, [], "only one class"),
        ([{"comment": "you fool", "label": "toxic"}], [], "lacks a `text` or `label` column"),
        ([{"text": "you fool", "label": "maybe"}], [], "use toxic/clean or 1/0"),
        (None, ["--layer", "17"], "has layers [0, 1, 2, 3, 4, 5]"),
        (None, ["--ks", "0", "2"], "ks must be K >= 1"),
        (None, ["--ks", "1", "100000"], "exceeds the SAE width"),
        (None, ["--fraction", "1.5"], "fraction must be in (0, 1]"),
        (None, ["--splits", "easy"], "invalid choice: 'easy'"),
        ([{"text": "you fool", "label": "toxic"}], ["--splits", "hard"], "pass one or the other"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, one_thread, rows, extra, message):
    files = []
    if rows is not None:
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        good = tmp_path / "good.jsonl"
        good.write_text(json.dumps({"text": "a", "label": 1}) + "\n" + json.dumps({"text": "b", "label": 0}) + "\n")
        files = ["--discovery-file", path, "--test-file", good]
    code, err = run_cli(
        ["apps", "toxicity", "--out", tmp_path / "out", "--device", "cpu", *RESID, *files, *extra], capsys
    )
    assert code == 2 and message in err, err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_files_are_required_off_the_organism(tmp_path, capsys):
    code, err = run_cli(["apps", "toxicity", "--out", tmp_path, "--model", "Qwen/Qwen3-0.6B"], capsys)
    assert code == 2 and "--discovery-file and --test-file" in err, err
    code, err = run_cli(["apps", "toxicity", "--out", tmp_path, "--discovery-file", tmp_path / "x.jsonl"], capsys)
    assert code == 2 and "pass both" in err, err


# --- the shared-vocabulary splits (--splits hard) ----------------------------------------------------------------
def _words(rows: list[dict]) -> list[set[str]]:
    return [set(re.findall(r"\w+", r["text"].lower())) for r in rows]


@pytest.mark.parametrize("suffix", ["_hard", "_hard_discovery"])
def test_hard_splits_share_their_words_across_labels(suffix):
    """Toxic and clean rows use nearly the same words (unlike the marker splits, where every row has a word of its
    label only), so no word gives the label away."""

    def overlap(toxic: str, clean: str) -> tuple[float, float]:
        tox, cln = _words(load_eval_split(toxic)), _words(load_eval_split(clean))
        vt, vc = set().union(*tox), set().union(*cln)
        exclusive = sum(bool(w - vc) for w in tox) + sum(bool(w - vt) for w in cln)
        return len(vt & vc) / len(vt | vc), exclusive / (len(tox) + len(cln))

    jaccard, giveaway = overlap(f"toxic{suffix}", f"clean{suffix}")
    markers = overlap(*(("toxic", "clean") if suffix == "_hard" else ("toxic_discovery", "clean_discovery")))
    assert jaccard >= 0.9 and markers[0] < 0.5  # shared word types: hard vs marker splits
    assert giveaway <= 0.1 and markers[1] == 1.0  # rows holding a word only their label uses
    rows = load_eval_split(f"toxic{suffix}") + load_eval_split(f"clean{suffix}")
    assert {r["lang"] for r in rows} == {"en", "fr"} and {r["kind"] for r in rows} == KINDS


def test_words_do_not_give_the_hard_labels_away():
    """A logistic regression on word counts, trained on discovery rows, reaches every marker-split test row but stays
    near chance on the hard test rows: what separates their labels is not which words occur."""

    def bag_of_words_accuracy(disc_names: tuple[str, str], test_names: tuple[str, str]) -> float:
        disc = [r for n in disc_names for r in load_eval_split(n)]
        test = [r for n in test_names for r in load_eval_split(n)]
        vocab = {w: i for i, w in enumerate(sorted(set().union(*_words(disc + test))))}

        def counts(rows: list[dict]) -> torch.Tensor:
            x = torch.zeros(len(rows), len(vocab))
            for i, r in enumerate(rows):
                for w in re.findall(r"\w+", r["text"].lower()):
                    x[i, vocab[w]] += 1
            return x

        y_d, y_t = (torch.tensor([r["label"] == "toxic" for r in rows]) for rows in (disc, test))
        return accuracy(logistic_probe(counts(disc), y_d)(counts(test)), y_t)

    assert bag_of_words_accuracy(("toxic_discovery", "clean_discovery"), ("toxic", "clean")) >= 0.95
    assert bag_of_words_accuracy(("toxic_hard_discovery", "clean_hard_discovery"), ("toxic_hard", "clean_hard")) < 0.65


def test_hard_discovery_and_test_vocabularies_are_disjoint():
    """Discovery and test rows share only the templates' function words; each uses one half of every slot list."""
    disc = load_eval_split("toxic_hard_discovery") + load_eval_split("clean_hard_discovery")
    test = load_eval_split("toxic_hard") + load_eval_split("clean_hard")
    templates = {w for pairs in HARD_TEMPLATES.values() for p in pairs for t in p[1:] for w in _words([{"text": t}])[0]}
    templates |= {"a", "an", "de", "d"}  # the articles the slots add ({a_noun}, {de})
    assert not (set().union(*_words(disc)) & set().union(*_words(test))) - templates
    for rows, half in ((disc, 0), (test, 1)):
        for lang in ("en", "fr"):
            used = set().union(*_words([r for r in rows if r["lang"] == lang]))
            for slot in SLOTS:
                words = HARD_COMMENT_SLOTS[lang][slot]
                assert used & set(half_of(words, half)), (lang, slot)
                assert not used & (set(half_of(words, 1 - half)) - set(half_of(words, half))), (lang, slot)


@pytest.fixture(scope="module")
def hard_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("toxicity_hard")
    fast = ["--max-per-class", "60", "--random-draws", "5", "--fraction-draws", "2"]
    assert main(["apps", "toxicity", "--out", str(out), "--device", "cpu", "--splits", "hard", *RESID, *fast]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_hard_splits_separate_the_methods(hard_run, organism_run):
    """On the hard splits the feature classifier, the probe and difference of means are reported with the control,
    and they do not all score 1.00 as on the marker splits."""
    out, summary = hard_run
    assert all(key in summary for key in KEYS) and summary["data"] == "hard" and summary["n_test"] == 120
    methods = pd.read_csv(out / "toxicity_methods.csv")
    names = " | ".join(methods.method)
    for method in ("SAE features, OR rule", "logistic probe", "difference of means", "random firing features"):
        assert method in names
    assert methods.f1_test.between(0, 1).all() and methods.accuracy.between(0, 1).all()
    scores = [summary[k] for k in ("f1_test", "probe_f1", "dim_f1")]
    assert min(scores) < 0.95 and max(scores) - min(scores) > 0.05
    assert summary["f1_test"] < organism_run[1]["f1_test"]  # the features lose what the marker words gave them
    by_kind = pd.read_csv(out / "toxicity_by_kind.csv")
    assert set(by_kind.kind) == KINDS and by_kind.n.sum() == 120
    assert "toxic_hard/clean_hard" in (out / "toxicity.md").read_text()

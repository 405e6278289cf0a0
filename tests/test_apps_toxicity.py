"""`qwen3-scope apps toxicity` on the real organism and its bundled SAEs: the zero-shot classifier reaches the
target on a test vocabulary it never saw, user files give the same result as the splits, bad input exits 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import run_cli

from qwen3_scope.cli import main
from qwen3_scope.organism import load_eval_split

KEYS = ("f1_test", "f1_crosslingual", "f1_ratio_10pct", "probe_f1", "dim_f1", "random_f1", "layer", "k")
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
    assert len(methods) == 6 and (out / "toxicity_f1.png").stat().st_size > 10_000
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

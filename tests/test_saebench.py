"""`qwen3-scope bench`: SAEBench 0.6's own evals on the organism suite, offline (issue 27).

The main environment has numpy 2, which SAEBench cannot import; the end-to-end tests build (once, cached by the
pins) a `--system-site-packages` venv with the `bench` extra (`qwen3_scope.evaluation.bench_env`) and run the
command there. A venv that cannot be built fails the test with pip's output; nothing is skipped. The data, config
and error tests run here, without SAEBench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from transformers import AutoTokenizer

from qwen3_scope.cli import main as cli_main
from qwen3_scope.core.errors import ConfigError, CorruptFileError
from qwen3_scope.evaluation.bench_config import BENCH_EVALS, BenchConfig, UnknownEvalError, check_evals
from qwen3_scope.evaluation.bench_env import BENCH_EXTRA, create_venv
from qwen3_scope.evaluation.saebench_data import (
    PREFIX,
    MissingLabelsError,
    TooFewExamplesError,
    check_supervised,
    file_data,
    organism_data,
)
from qwen3_scope.model.family import ORGANISM_DIR

ROOT = Path(__file__).resolve().parents[1]
SAE = "organism/resid_post/layer_3"
SMALL = [
    "--train-size", "40", "--test-size", "20", "--core-batches", "1", "--core-batch-size", "4",
    "--n-values", "2", "5", "10", "--probe-epochs", "2", "--absorption-probe-epochs", "2", "--absorption-max-k", "2",
    "--meta-train-steps", "5", "--meta-batch-size", "64", "--llm-batch-size", "32",
]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ORGANISM_DIR)


# ---- without SAEBench ----------------------------------------------------------------------------------------


def test_bench_extra_is_the_pinned_resolution():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert tuple(extras["bench"]) == BENCH_EXTRA


def test_eval_names():
    assert check_evals(["Sparse-Probing", "core", "core"]) == ["sparse_probing", "core"]
    with pytest.raises(UnknownEvalError, match="SAEBench 0.6 has no eval 'spelling'"):
        check_evals(["spelling"])
    with pytest.raises(UnknownEvalError, match="OpenAI"):
        check_evals(["autointerp"])
    with pytest.raises(ConfigError, match="scr_column"):
        BenchConfig(scr_column="lang")
    with pytest.raises(ConfigError, match="train_size"):
        BenchConfig(train_size=0)


def test_cli_errors(capsys):
    assert cli_main(["bench", "--evals", "ravel"]) == 2
    assert "'ravel' eval is not run" in capsys.readouterr().err


def test_missing_extra_says_how_to_install(monkeypatch, capsys):
    # whatever this environment has, make `import sae_bench` fail the way a missing package does
    monkeypatch.setitem(sys.modules, "sae_bench", None)
    for name in ("qwen3_scope.evaluation.saebench", "qwen3_scope.evaluation.saebench_compat"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert cli_main(["bench", "--evals", "core"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'qwen3-scope[bench]'" in err and "numpy < 2" in err


def test_organism_data_in_saebench_shapes(tokenizer):
    data = organism_data(tokenizer, train_size=40, test_size=20)
    sets = {s.name: s for s in data.probe_sets}
    assert set(sets) == {PREFIX + f"organism-{n}" for n in ("language", "harm", "toxicity", "tasks")}
    lang = sets[PREFIX + "organism-language"]
    assert lang.classes == ["en", "fr"] and [len(v) for v in lang.train.values()] == [20, 20]
    assert [len(v) for v in lang.test.values()] == [10, 10]
    assert not set(lang.train["en"]) & set(lang.test["en"])
    assert lang.train["en"][0].startswith("<|im_start|>user")  # requests go through the chat template
    tasks = sets[PREFIX + "organism-tasks"]  # multi-class: how-to + the 12 task kinds
    assert len(tasks.classes) == 13 and all(len(v) == 20 for v in tasks.train.values())
    (scr,) = data.spurious_sets
    assert scr.column1_mapping == {"harmful": 0, "harmless": 1} and scr.column2_mapping == {"en": 0, "fr": 1}
    assert list(scr.train.columns) == ["text", "harm", "lang"] and scr.column1_pairs == [("harmful", "harmless")]
    check_supervised(data, list(BENCH_EVALS))


def test_too_few_examples(tokenizer, tmp_path):
    with pytest.raises(TooFewExamplesError, match="organism-language: classes with fewer"):
        organism_data(tokenizer, train_size=2000, test_size=1000)
    with pytest.raises(TooFewExamplesError, match="at least 4 of each class"):
        organism_data(tokenizer, train_size=4, test_size=20)


def test_labelled_file(tmp_path):
    rows = [{"text": f"text {i}", "label": "a" if i % 2 else "b", "lang": "en" if i % 3 else "fr"} for i in range(480)]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = file_data(path, 40, 20, scr_column="lang")
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in rows[:120]))
    with pytest.raises(TooFewExamplesError, match="spurious-correlation sets need 21"):
        file_data(small, 40, 20, scr_column="lang")
    (probe,) = data.probe_sets
    assert probe.classes == ["a", "b"] and len(probe.train["a"]) == 20
    assert data.spurious_sets[0].column2_mapping == {"en": 0, "fr": 1}
    with pytest.raises(MissingLabelsError, match="SCR needs a second attribute"):
        check_supervised(file_data(path, 40, 20), ["scr"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no label"}) + "\n")
    with pytest.raises(MissingLabelsError, match="lacks one of the columns text, label"):
        file_data(bad, 40, 20)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CorruptFileError, match="empty"):
        file_data(empty, 40, 20)
    one = tmp_path / "one.csv"
    one.write_text("text,label\n" + "".join(f"t{i},x\n" for i in range(50)))
    with pytest.raises(MissingLabelsError, match="a probe needs two"):
        file_data(one, 40, 20)


# ---- SAEBench in its own venv ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_python():
    start = time.perf_counter()
    python = create_venv()  # cached by the pins; a pip failure raises BenchVenvError with pip's output
    print(f"bench venv ready in {time.perf_counter() - start:.1f} s: {python.parent.parent.name}")
    return python


def _bench(python: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys, qwen3_scope_cli; sys.exit(qwen3_scope_cli.main())"
    return subprocess.run(
        [str(python), "-c", code, "bench", "--ids", SAE, "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=out.parent,
    )


@pytest.fixture(scope="module")
def bench_run(bench_python, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    proc = _bench(bench_python, out, "--evals", *BENCH_EVALS, *SMALL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out, proc


# one interpreter start for the checks inside the venv: validate every result JSON with SAEBench's own classes,
# show that validation can fail (a core result without its L0), then the hub path up to the network boundary
CHECKS = """
import copy, json, sys
from pathlib import Path
import qwen3_scope_cli
from qwen3_scope.evaluation.saebench import validate_results
out, scratch = Path(sys.argv[1]), Path(sys.argv[2])
report = {"counts": validate_results(out)}
broken = json.loads(next((out / "core").glob("*.json")).read_text())
del broken["eval_result_metrics"]["sparsity"]["l0"]
(scratch / "core").mkdir(parents=True)
(scratch / "core" / "x_eval_results.json").write_text(json.dumps(broken))
try:
    validate_results(scratch)
    report["broken"] = "validated"
except Exception as err:
    report["broken"] = type(err).__name__ + ": " + str(err)[:300]
report["hub_rc"] = qwen3_scope_cli.main(
    ["bench", "--ids", "organism/resid_post/layer_3", "--out", str(scratch / "hub"), "--data", "hub", "--evals", "sparse_probing"]
)
print("REPORT " + json.dumps(report))
"""


def test_bench_runs_saebench_offline_and_validates(bench_python, bench_run, tmp_path):
    out, proc = bench_run
    check = subprocess.run(
        [str(bench_python), "-c", CHECKS, str(out), str(tmp_path)], capture_output=True, text=True, env=ENV
    )
    assert check.returncode == 0, check.stderr[-4000:]
    report = json.loads(check.stdout.split("REPORT ", 1)[1])
    # every eval wrote SAEBench's JSON and it constructs SAEBench's own output class, except absorption (below)
    assert report["counts"] == {e: 1 for e in BENCH_EVALS if e != "absorption"}
    assert report["broken"].startswith("ValidationError") and "l0" in report["broken"]
    # real models read SAEBench's hub datasets; offline, that is a one-line error naming them
    assert report["hub_rc"] == 2
    assert "LabHC/bias_in_bios_class_set1" in check.stderr and "OfflineModeIsEnabled" in check.stderr
    core = json.loads(next((out / "core").glob("*.json")).read_text())
    assert core["eval_type_id"] == "core" and core["sae_lens_id"] == SAE
    assert core["sae_bench_commit_hash"] == "sae-bench==0.6.0"
    assert 0.5 < core["eval_result_metrics"]["reconstruction_quality"]["explained_variance"] <= 1
    probing = json.loads(next((out / "sparse_probing").glob("*.json")).read_text())
    datasets = {d["dataset_name"] for d in probing["eval_result_details"]}
    assert datasets == {PREFIX + f"organism-{n}_results" for n in ("language", "harm", "toxicity", "tasks")}
    assert probing["eval_result_metrics"]["llm"]["llm_test_accuracy"] > 0.7
    scr = json.loads(next((out / "scr").glob("*.json")).read_text())
    assert any(d["dataset_name"].startswith(PREFIX + "organism-harm-x-language") for d in scr["eval_result_details"])
    # absorption: the organism cannot spell, so SAEBench stops before measuring; the table says so
    (note,) = (out / "absorption").glob("*_not_measured.json")
    assert len(json.loads(note.read_text())["first_letter_probe_f1"]) == 26
    table = (out / "bench.md").read_text()
    assert "cannot spell" in table and "first-letter probes reach F1" in table
    assert (out / "bench.png").is_file()

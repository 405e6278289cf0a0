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

import pandas as pd
import pytest
import tomllib
from transformers import AutoTokenizer

from qwen3_scope.cli import main as cli_main
from qwen3_scope.core.errors import ConfigError, CorruptFileError
from qwen3_scope.demo.bench import bench_section
from qwen3_scope.demo.config import DemoConfig
from qwen3_scope.demo.state import DemoState
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
from qwen3_scope.naming import RELEASE

ROOT = Path(__file__).resolve().parents[1]
SAE = "organism/resid_post/layer_3"
TRANSCODER = "organism/transcoder/layer_3"
SMALL = [
    "--train-size", "40", "--test-size", "20", "--core-batches", "1", "--core-batch-size", "4",
    "--n-values", "10", "--probe-epochs", "2", "--absorption-probe-epochs", "2", "--absorption-max-k", "2",
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
    python = create_venv()  # cached by the pins; a pip failure raises VenvBuildError with pip's output
    print(f"bench venv ready in {time.perf_counter() - start:.1f} s: {python.parent.parent.name}")
    return python


def _bench(python: Path, out: Path, *args: str, ids: str = SAE) -> subprocess.CompletedProcess:
    code = "import sys, qwen3_scope_cli; sys.exit(qwen3_scope_cli.main())"
    return subprocess.run(
        [str(python), "-c", code, "bench", "--ids", ids, "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=out.parent,
    )


@pytest.fixture(scope="module")
def bench_run(bench_python, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    # the SAE and the transcoder of layer 3 (which bench leaves out with a note), with SAEBench's baselines there
    start = time.perf_counter()
    proc = _bench(bench_python, out, "--evals", *BENCH_EVALS, *SMALL, "--baselines", ids=f"{SAE}|{TRANSCODER}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    print(f"bench run (1 SAE + 3 baselines, 6 evals): {time.perf_counter() - start:.1f} s")
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
report["transcoders_rc"] = qwen3_scope_cli.main(
    ["bench", "--ids", "organism/transcoder/layer_3", "--out", str(scratch / "tc"), "--evals", "core"]
)
print("REPORT " + json.dumps(report))
"""


def _sae_result(directory: Path) -> Path:
    (path,) = (p for p in directory.glob("*_eval_results.json") if not p.name.startswith("baseline"))
    return path


def test_bench_runs_saebench_offline_and_validates(bench_python, bench_run, tmp_path):
    out, proc = bench_run
    check = subprocess.run(
        [str(bench_python), "-c", CHECKS, str(out), str(tmp_path)], capture_output=True, text=True, env=ENV
    )
    assert check.returncode == 0, check.stderr[-4000:]
    report = json.loads(check.stdout.split("REPORT ", 1)[1])
    # every eval wrote SAEBench's JSON for the SAE and its 3 baselines, and it constructs SAEBench's own output
    # class; absorption measures nothing (below)
    assert report["counts"] == {e: 4 for e in BENCH_EVALS if e != "absorption"}
    assert report["broken"].startswith("ValidationError") and "l0" in report["broken"]
    # real models read SAEBench's hub datasets; offline, that is a one-line error naming them
    assert report["hub_rc"] == 2
    assert "LabHC/bias_in_bios_class_set1" in check.stderr and "OfflineModeIsEnabled" in check.stderr
    # transcoders are not SAEBench material: alone, a clear error; beside SAEs, left out with a note
    assert report["transcoders_rc"] == 2 and "all transcoders" in check.stderr
    assert "Traceback" not in check.stderr and "Traceback" not in proc.stderr
    core = json.loads(_sae_result(out / "core").read_text())
    assert core["eval_type_id"] == "core" and core["sae_lens_id"] == SAE
    assert core["sae_bench_commit_hash"] == "sae-bench==0.6.0"
    assert 0.5 < core["eval_result_metrics"]["reconstruction_quality"]["explained_variance"] <= 1
    probing = json.loads(_sae_result(out / "sparse_probing").read_text())
    datasets = {d["dataset_name"] for d in probing["eval_result_details"]}
    assert datasets == {PREFIX + f"organism-{n}_results" for n in ("language", "harm", "toxicity", "tasks")}
    assert probing["eval_result_metrics"]["llm"]["llm_test_accuracy"] > 0.7
    scr = json.loads(_sae_result(out / "scr").read_text())
    assert any(d["dataset_name"].startswith(PREFIX + "organism-harm-x-language") for d in scr["eval_result_details"])
    # absorption: the organism cannot spell, so SAEBench stops before measuring; the table says so
    notes = sorted((out / "absorption").glob("*_not_measured.json"))
    assert len(notes) == 4 and all(len(json.loads(n.read_text())["first_letter_probe_f1"]) == 26 for n in notes)
    table = (out / "bench.md").read_text()
    assert "cannot spell" in table and "first-letter probes reach F1" in table
    assert f"left out 1 transcoder(s) ({TRANSCODER})" in table
    assert (out / "bench.png").is_file()
    # the baselines beside the SAE: identity reconstructs perfectly, the random SAE worst
    bench = pd.read_csv(out / "bench.csv").set_index("sae_id")
    assert list(bench.index) == [SAE] + [f"resid_post/layer_3/{b}" for b in ("identity", "pca", "random")]
    assert list(bench["source"]) == [RELEASE] + ["baseline"] * 3
    ev = bench["explained_variance"]
    assert ev["resid_post/layer_3/identity"] > 0.999 and ev.idxmin() == "resid_post/layer_3/random"
    assert ev["resid_post/layer_3/random"] < ev[SAE] - 0.2
    assert bench["llm_probe_accuracy"].nunique() == 1  # one residual stream under all four
    assert {"sparse_probing_top1", "sparse_probing_top5", "scr_top10", "tpp_top10", "meta_structure_fve"} <= set(bench)


# ---- the bench run's numbers where people look: `qwen3-scope eval --bench DIR` and the demo, in this environment ----


@pytest.fixture(scope="module")
def eval_with_bench(bench_run, tmp_path_factory):
    out, _ = bench_run
    ev = tmp_path_factory.mktemp("eval") / "eval"
    args = ["eval", "--ids", f"{SAE}|{TRANSCODER}", "--batches", "1", "--batch-size", "4", "--out", str(ev)]
    assert cli_main([*args, "--bench", str(out)]) == 0
    return ev


def test_eval_joins_the_bench_run(bench_run, eval_with_bench, tmp_path, capsys):
    out, ev = bench_run[0], eval_with_bench
    bench = pd.read_csv(out / "bench.csv").set_index("sae_id")
    table = pd.read_csv(ev / "suite_eval.csv").set_index("sae_id")
    for column in ("sparse_probing_top1", "sparse_probing_top5", "scr_top10", "tpp_top10", "meta_structure_fve"):
        assert table.loc[SAE, f"saebench_{column}"] == pytest.approx(bench.loc[SAE, column])
    assert table.loc[SAE, "saebench_absorption"] == "not measured (cannot spell)"
    assert (
        table.loc[TRANSCODER, "saebench_scr_top10"] != table.loc[TRANSCODER, "saebench_scr_top10"]
    )  # NaN: not benched
    html = (ev / "report.html").read_text()
    assert "<h2>SAEBench</h2>" in html and "saebench_tpp_top10" in html
    for baseline in ("identity", "pca", "random"):
        assert f"resid_post/layer_3/{baseline}" in html
    assert "left out 1 transcoder(s)" in html and "targeted probe perturbation" in html
    assert (ev / "saebench.png").stat().st_size > 10_000 and (ev / "saebench.csv").is_file()
    assert str(out.parent.parent) not in html
    # a bench run of other SAEs, or no bench run at all: clear errors before anything is measured
    other = ["eval", "--ids", "organism/mlp_out/layer_3", "--batches", "1", "--batch-size", "4", "--out", str(tmp_path)]
    assert cli_main([*other, "--bench", str(out)]) == 2
    err = capsys.readouterr().err
    assert "it is a bench run of another suite" in err and SAE in err and "Traceback" not in err
    assert cli_main([*other, "--bench", str(tmp_path)]) == 2
    assert "has no bench.csv" in capsys.readouterr().err
    assert not (tmp_path / "suite_eval.csv").exists()


def test_demo_bench_section_shows_the_run(bench_run, eval_with_bench, tmp_path):
    state = DemoState(config=DemoConfig(out=tmp_path).resolved())
    state.eval_table = pd.read_csv(eval_with_bench / "suite_eval.csv")
    bench_section(state, bench_run[0])
    (section,) = state.sections
    assert section.startswith("## SAEBench") and "*Numbers: computed now, by SAEBench" in section
    assert "resid_post/layer_3/random" in section and "cannot spell" in section
    joined = section.split("joined on `sae_id`")[1]
    assert "saebench_sparse_probing_top1" in joined and SAE in joined and TRANSCODER not in joined

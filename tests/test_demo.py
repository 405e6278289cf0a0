"""The demo: its cheapest stages end to end, stage selection, and the quick / full presets (nothing heavy runs)."""

from __future__ import annotations

import re

import pytest
import torch

from qwen3_scope.apps import APPS
from qwen3_scope.cli import build_parser
from qwen3_scope.core.config_cli import config_from_args
from qwen3_scope.core.errors import Qwen3ScopeError
from qwen3_scope.demo.apps import app_config
from qwen3_scope.demo.config import PRESETS, DemoConfig, UnknownStageError
from qwen3_scope.demo.run import STAGES, run_demo
from qwen3_scope.demo.state import DemoState
from qwen3_scope.demo.training import suite_config
from qwen3_scope.evaluation.bench_env import PYTHON_ENV
from qwen3_scope.training.config import organism_suite_config


def test_cheapest_stages_write_their_sections_and_the_timings(tmp_path):
    torch.set_num_threads(1)
    report = run_demo(DemoConfig(out=tmp_path, stages=["organism", "adapters", "family"]))
    text = report.read_text()
    titles = re.findall(r"^## (.+)$", text, flags=re.M)
    assert titles == [  # the demo's order, whatever the order given
        "Adapters: one activation, three backends",
        "The Qwen3 family: MoE and hybrid models on the meta device",
        "The model organism (held-out prompts, greedy, non-thinking)",
        "Timings",
    ]
    assert text.count("*Numbers: computed now") == 3
    timings = text.split("## Timings")[1]
    assert "quick" in timings
    for name in ("adapters", "family", "organism"):
        assert re.search(rf"^\| {name} +\| +[\d.]+ *\|$", timings, flags=re.M), timings  # 12.0 prints as "12   "
    assert (tmp_path / "adapters.csv").is_file() and (tmp_path / "family.csv").is_file()


def test_unknown_stage_is_a_clear_error_before_anything_runs(tmp_path):
    out = tmp_path / "demo"
    with pytest.raises(UnknownStageError, match="valid stages, in order: adapters, family, organism, train") as err:
        run_demo(DemoConfig(out=out, stages=["adapters", "trian"]))
    assert isinstance(err.value, Qwen3ScopeError) and "trian" in str(err.value)
    assert not out.exists()


def test_stages_are_an_explicit_ordered_list():
    names = [s.name for s in STAGES]
    apps = [f"apps-{name}" for name in APPS]
    first = ["adapters", "family", "organism", "train", "distributed", "eval", "bench", "steer", "transcoders", "trace"]
    assert names == [*first, *apps, "export", "real-models"]


def test_bench_stage_without_a_bench_environment_says_how_to_make_one(tmp_path, monkeypatch):
    # SAEBench runs in a venv of its own (numpy < 2); tests/test_saebench.py runs it there and checks the section
    # this stage writes from its output (`bench_section`); here: what the report says when there is no such venv
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "no-such-python"))
    text = run_demo(DemoConfig(out=tmp_path / "demo", stages=["bench"])).read_text()
    section = text.split("## SAEBench")[1].split("## Timings")[0]
    assert f"*Numbers: not run (${PYTHON_ENV} names an interpreter that does not exist)" in section
    assert "create_venv()" in section and "pip install 'qwen3-scope[bench]'" in section
    assert str(tmp_path) not in text and not (tmp_path / "demo" / "bench").exists()


def test_transcoder_stages_evaluate_the_bundled_set_and_say_how_to_trace(tmp_path, monkeypatch):
    # the trace stage with circuit-tracer's venv runs `run_trace` at these sizes in tests/test_circuit_tracer.py; here,
    # with a cache holding no venv, it says how to build one; the transcoders stage runs (one batch of held-out tokens)
    torch.set_num_threads(1)
    monkeypatch.setenv("QWEN3_SCOPE_CACHE", str(tmp_path / "cache"))
    text = run_demo(DemoConfig(out=tmp_path / "demo", stages=["trace", "transcoders"])).read_text()
    section = text.split("## Transcoders")[1].split("## Circuits")[0]
    assert "*Numbers: weights shipped" in section and "metrics computed now" in section
    rows = re.findall(r"^\| organism/transcoder/layer_(\d) +\| +([\d.]+) ", section, flags=re.M)
    assert [int(layer) for layer, _ in rows] == list(range(6)) and all(float(ev) > 0.8 for _, ev in rows), section
    assert "Replacement model organism/transcoder/layer_* (6 transcoders, all 6 layers" in section
    assert (tmp_path / "demo" / "transcoders" / "replacement_model.csv").is_file()
    trace = text.split("## Circuits")[1].split("## Timings")[0]
    assert "*Numbers: not run (no circuit-tracer environment" in trace and "`qwen3-scope trace --setup`" in trace
    assert str(tmp_path) not in text and not (tmp_path / "cache").exists()


def test_cli_options_come_from_demo_config():
    args = build_parser().parse_args(
        ["demo", "--out", "x", "--full", "--stages", "train", "eval", "--train-tokens", "9"]
    )
    config = config_from_args(DemoConfig, args)
    assert (config.full, config.stages, config.train_tokens, str(config.out)) == (True, ["train", "eval"], 9, "x")
    assert config_from_args(DemoConfig, build_parser().parse_args(["demo"])) == DemoConfig()


def test_full_runs_the_bundled_recipe_and_quick_a_small_suite(tmp_path):
    full = DemoState(config=DemoConfig(out=tmp_path, full=True).resolved())
    assert suite_config(full) == organism_suite_config(out=str(tmp_path / "suite"), threads=1, resume=True)
    assert full.config.use_trained_suite and full.config.app_sizes == {}
    assert all(getattr(full.config, k) == v for k, v in PRESETS["full"].items())

    quick = DemoState(config=DemoConfig(out=tmp_path).resolved())
    cfg = suite_config(quick)
    assert cfg.layers == [2] and cfg.training_tokens < 100_000 and not cfg.sparsities and not cfg.sweep_layers
    assert not quick.config.use_trained_suite
    # a size given explicitly wins over the preset
    assert DemoConfig(full=True, train_tokens=1000).resolved().train_tokens == 1000


def test_quick_app_sizes_are_valid_configs(tmp_path):
    state = DemoState(config=DemoConfig(out=tmp_path).resolved())
    for name, spec in APPS.items():
        config = app_config(spec, state)
        for key, value in state.config.app_sizes.get(name, {}).items():
            assert getattr(config, key) == value, (name, key)

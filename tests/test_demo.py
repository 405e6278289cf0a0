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
    assert names == ["adapters", "family", "organism", "train", "distributed", "eval", "steer", *apps, "export"] + [
        "real-models"
    ]


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

"""`qwen3-scope apps redundancy` on the real organism, its bundled SAEs and real fine-tuned variants: asymmetric
overlap with a unit diagonal, rho and its p-value in summary.json, the statistics against hand-computed values,
and bad input as one clear error (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli

from qwen3_scope.apps.redundancy import (
    constructed_benchmarks,
    finetune_pool,
    footprint_similarity,
    kendall_tau,
    mixable_families,
    organism_benchmarks,
    overlap_matrix,
    permutation_p,
    spearman_rho,
    variant_rows,
    within_level_rho,
)
from qwen3_scope.cli import main

KEYS = ("spearman_rho", "p_value", "size_only_rho", "n_benchmarks", "n_models")
RESID = ["--sae-ids", *(f"organism/resid_post/layer_{i}" for i in range(6))]
FAST = ["--max-items", "10", "--n-models", "10", "--variant-steps", "6", "--n-subsets", "20"]
FAST += ["--n-permutations", "2000", "--fractions", "0.2", "0.5", "0.8"]


def _redundancy_run(tmp_path_factory, name: str, sizes: list[str]):
    """`qwen3-scope apps redundancy` on the organism's residual SAEs at `sizes`: (its out dir, its summary)."""
    out = tmp_path_factory.mktemp(name)
    assert main(["apps", "redundancy", "--out", str(out), "--device", "cpu", *RESID, *sizes]) == 0
    return out, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def organism_run(tmp_path_factory, one_thread):
    return _redundancy_run(tmp_path_factory, "redundancy", FAST)


def test_organism_summary_and_files(organism_run):
    out, summary = organism_run
    assert all(key in summary for key in KEYS)
    assert summary["n_models"] == 10 and summary["n_benchmarks"] >= 10
    assert -1 <= summary["spearman_rho"] <= 1 and 0 < summary["p_value"] <= 1
    table = pd.read_csv(out / "redundancy_benchmarks.csv")
    assert len(table) == 13 and table.n_items.max() == 10 and table.n_items.min() >= 2  # `list` has 6 items
    assert table.R_hat.between(0, 1).all() and (table.n_features > 0).all()
    models = pd.read_csv(out / "redundancy_models.csv")
    assert len(models) == 10 and models.iloc[0]["model"] == "base"
    accuracy = models.drop(columns=[c for c in models if not pd.api.types.is_float_dtype(models[c])])
    assert (accuracy.max() - accuracy.min()).max() > 0.3  # the variants really differ
    for name in ("redundancy_overlap", "redundancy_scatter"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def test_overlap_is_asymmetric_with_unit_diagonal(organism_run):
    out, _ = organism_run
    overlap = pd.read_csv(out / "redundancy_overlap.csv").set_index("benchmark")
    m = overlap.to_numpy()
    assert list(overlap.columns) == list(overlap.index)
    assert np.allclose(np.diag(m), 1) and ((m >= 0) & (m <= 1)).all()
    assert np.abs(m - m.T).max() > 0.05


def test_overlap_of_nested_footprints():
    small = torch.tensor([[1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    big = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0]], dtype=torch.bool)
    m = overlap_matrix({"small": small, "big": big})
    assert np.allclose(m, [[1, 1], [0.5, 1]])


def test_footprint_similarity_against_hand_values():
    a = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)
    # within: J(a0, a1) = 1, J(b0, b1) = 2/3; across: J(a_i, b0) = 0, J(a_i, b1) = 1/4
    stats = footprint_similarity({"a": a, "b": b})
    assert stats == pytest.approx({"footprint_size": 2.25, "jaccard_within": 5 / 6, "jaccard_between": 1 / 8})


def test_rank_statistics_against_hand_values():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert kendall_tau(a, a) == 1 and kendall_tau(a, -a) == -1
    # pairs of (1,1,2,3) vs (1,2,3,4): 5 concordant, 0 discordant, one tie in x: tau_b = 5 / sqrt(5 * 6)
    assert kendall_tau(np.array([1.0, 1, 2, 3]), a) == pytest.approx(5 / np.sqrt(30))
    assert np.isnan(kendall_tau(np.ones(4), a))
    assert spearman_rho(a, np.array([10.0, 20, 40, 30])) == pytest.approx(0.8)
    x = np.arange(10.0)
    p = permutation_p(x, x, 20_000, np.random.default_rng(0))
    assert p < 0.001  # |rho| = 1 only for the two monotone orders: 2 / 10! of the permutations
    assert permutation_p(x, np.array([3.0, 9, 0, 5, 1, 8, 2, 7, 4, 6]), 2000, np.random.default_rng(0)) > 0.2


def test_variants_are_deterministic_and_disjoint_from_benchmarks():
    items = {i["prompt"] for v in organism_benchmarks().values() for i in v}
    pool = finetune_pool(items)
    assert all(len(rows) >= 5 for rows in pool.values())
    rows, actions = variant_rows(pool, sorted(pool), seed=7)
    assert (rows, actions) == variant_rows(pool, sorted(pool), seed=7)
    assert set(actions.values()) <= {"rehearse", "unlearn", "keep"} and rows
    assert not items & {r["messages"][0]["content"] for r in rows}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fractions", "0.5", "1.5"], "fractions must lie in (0, 1)"),
        (["--n-models", "2"], "ranking needs >= 3 models"),
        (["--model", "Qwen/Qwen3-0.6B"], "--benchmarks-file and --model-dirs"),
        (["--layers", "9"], "has layers [0, 1, 2, 3, 4, 5]"),
        (["--design", "mixed"], "invalid choice: 'mixed'"),
        (["--design", "constructed", "--mix-levels", "2", "2"], "mix_levels needs >= 2 different k"),
        (["--design", "constructed", "--mix-levels", "0", "2"], "mix_levels must be >= 1"),
        (["--design", "constructed", "--bench-sizes", "1"], "bench_sizes must be >= 2 items"),
        (["--design", "constructed", "--bench-sizes", "200"], "families with >= 200 items, only 1 of 13"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, one_thread, extra, message):
    code, err = run_cli(["apps", "redundancy", "--out", tmp_path, "--device", "cpu", *RESID, *extra], capsys)
    assert code == 2 and message in err, err


def test_benchmarks_file_needs_columns(tmp_path, capsys):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"benchmark": "a", "question": "1+1?"}) + "\n")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    argv = ["apps", "redundancy", "--out", tmp_path / "out", "--benchmarks-file", path, "--model-dirs", *[ckpt] * 3]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "lacks prompt, reference" in err, err


def test_benchmarks_file_and_checkpoint_dirs(tmp_path, capsys, one_thread):
    """A user's own items (jsonl) ranked over checkpoints on disk: the organism and three saved fine-tunes."""
    from qwen3_scope.organism import ORGANISM_DIR, load_eval_split
    from qwen3_scope.organism.behaviour import load_organism
    from qwen3_scope.organism.finetune import sft

    tasks = load_eval_split("tasks")
    items = [r for kind in ("arith", "fact", "translate") for r in [r for r in tasks if r["task"] == kind][:20]]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"benchmark": r["task"], **r}) + "\n" for r in items))
    model, tok = load_organism()
    pool = finetune_pool({r["prompt"] for r in items})
    dirs = [ORGANISM_DIR]
    for seed in (1, 2, 3):
        rows, _ = variant_rows(pool, ["arith", "fact", "translate"], seed)
        sft(model, tok, rows, steps=6, lr=5e-4, seed=seed).save_pretrained(tmp_path / f"ckpt{seed}")
        tok.save_pretrained(tmp_path / f"ckpt{seed}")
        dirs.append(tmp_path / f"ckpt{seed}")
    argv = ["apps", "redundancy", "--out", tmp_path / "out", "--device", "cpu", *RESID, "--benchmarks-file", bench]
    code, err = run_cli(
        [*argv, "--model-dirs", *dirs, "--max-items", "12", "--n-subsets", "10", "--n-permutations", "100"], capsys
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_models"] == 4 and summary["n_benchmarks"] + len(summary["unranked_benchmarks"]) == 3
    models = pd.read_csv(tmp_path / "out" / "redundancy_models.csv")
    assert list(models["model"]) == [str(d) for d in dirs]


# --- the constructed design: benchmarks of known diversity ------------------------------------------------------
CONSTRUCTED = ["--design", "constructed", "--max-items", "12", "--bench-sizes", "6", "12", "--mix-levels", "1", "3"]
CONSTRUCTED += ["--per-level", "4", "--n-models", "4", "--variant-steps", "4", "--n-subsets", "10"]
CONSTRUCTED += ["--n-permutations", "200", "--fractions", "0.2", "0.5", "0.8"]


@pytest.fixture(scope="module")
def constructed_run(tmp_path_factory, one_thread):
    return _redundancy_run(tmp_path_factory, "redundancy_constructed", CONSTRUCTED)


def test_constructed_design_runs_and_plots(constructed_run):
    out, summary = constructed_run
    assert summary["design"] == "constructed" and summary["n_models"] == 4
    assert all(key in summary for key in (*KEYS, "rho_R_k", "rho_R_hat_k", "within_level_rho", "R_sd"))
    table = pd.read_csv(out / "redundancy_benchmarks.csv")
    assert list(table.benchmark) == [f"k{k}-{j}" for k in (1, 3) for j in range(4)]
    assert list(table.n_items) == [6, 12] * 4 and list(table.k) == [1] * 4 + [3] * 4
    assert (table.families.str.count("[+]") + 1 == table.k).all()
    assert summary["n_benchmarks"] + len(summary["unranked_benchmarks"]) == 8
    # footprints carry some of the families' content: two items of one family share more features than two of two,
    # and one-family benchmarks are covered by fewer of their items than three-family ones (R at this size, 4 models
    # and 6-12 items, is noise; the full design's R falls with k, see the README)
    assert summary["jaccard_within"] > summary["jaccard_between"] > 0
    assert summary["by_k"]["1"]["R_hat"] > summary["by_k"]["3"]["R_hat"] and summary["rho_R_hat_k"] < 0
    for name in ("redundancy_scatter", "redundancy_levels", "redundancy_overlap"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def test_constructed_benchmarks_have_the_designed_diversity():
    families = mixable_families(organism_benchmarks(), 48, 6)
    assert len(families) >= 6 and all(len(rows) >= 48 for rows in families.values())
    design = constructed_benchmarks(families, [1, 2, 3, 6], 5, [24, 48, 30], seed=3)
    assert design == constructed_benchmarks(families, [1, 2, 3, 6], 5, [24, 48, 30], seed=3)
    assert design != constructed_benchmarks(families, [1, 2, 3, 6], 5, [24, 48, 30], seed=4)
    for k in (1, 2, 3, 6):
        for j in range(5):
            items = design[f"k{k}-{j}"]
            shares = pd.Series([f for f, _ in items]).value_counts()
            assert len(items) == [24, 48, 30][j % 3] == len(set(items))  # the size asked for, no item twice
            assert len(shares) == k and shares.max() - shares.min() <= 1  # k families in equal shares
    assert {design[f"k1-{j}"][0][0] for j in range(5)} == set(sorted(families)[:5])  # one family each, in turn


def test_within_level_rho_sees_only_what_levels_leave():
    levels = np.repeat([1.0, 2.0, 3.0], 6)
    a = np.tile(np.arange(6.0), 3) + 10 * levels  # a rises with the level and within it
    b = np.tile(np.arange(6.0), 3) - 10 * levels  # b falls with the level but rises with a within it
    assert spearman_rho(a, b) < -0.5
    rho, p = within_level_rho(a, b, levels, 5000, np.random.default_rng(0))
    assert rho == pytest.approx(1) and p < 0.01
    flipped = np.tile([2.0, 5, 0, 4, 1, 3], 3)
    rho, p = within_level_rho(a, flipped, levels, 5000, np.random.default_rng(0))
    assert rho == pytest.approx(spearman_rho(np.arange(6.0), flipped[:6])) and p > 0.2
    assert np.isnan(within_level_rho(a, levels, levels, 10, np.random.default_rng(0))[0])  # b constant per level

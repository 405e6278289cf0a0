"""Build the organism SAE suite that ships inside the package, reproducibly, with one command.

    python -m qwen3_scope.bundle                      # train, copy into the package, measure, record
    python -m qwen3_scope.bundle --suite DIR          # bundle an already trained organism suite
    python -m qwen3_scope.bundle --transcoders        # the organism's transcoder set (ids organism/transcoder/layer_<L>)

Why a script: the bundled suite is a release (`qwen3-instruct-sae`, ids `organism/<site>/layer_<L>`) whose
weights, yaml entries (l0, variance explained) and recorded evaluation must agree; this is the one path
that writes all three.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from qwen3_scope.core.errors import CorruptFileError, Qwen3ScopeError, ReleaseError
from qwen3_scope.core.io import atomic_path, atomic_write_json, refuse_installed_package
from qwen3_scope.core.portable import machine_paths_in
from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite, write_back_release_yaml
from qwen3_scope.model.sites import PAPER_SITES
from qwen3_scope.naming import TRANSCODER, is_transcoder_id
from qwen3_scope.releases import (
    RELEASE,
    read_release_yaml,
    register_release_file,
    release_file,
    suite_entries,
    write_release_file,
)
from qwen3_scope.saes.loaders import (
    BUNDLED_PREFIX,
    SAE_CFG_FILENAME,
    SAE_WEIGHTS_FILENAME,
    SPARSITY_FILENAME,
    bundled_root,
)
from qwen3_scope.training.config import organism_suite_config, organism_transcoder_config
from qwen3_scope.training.manifest import SuiteManifest
from qwen3_scope.training.suite import train_suite

# What the shipped suite is trained with: `training.config.organism_suite_config` (the demo trains the same). attn_out
# gets 192 latents (1.2 x d_model): it is low-rank on the organism (13-14 principal components hold 90% of its
# variance). On an earlier organism at target L0 32, with reopening, 600k tokens and document-aligned windows, 7.8% of the
# latents of attn_out L3 stayed silent on 108k held-out tokens at width 320, 5.1% at 256 and 3.1% at 192, at the same
# EV (0.982-0.984); resampling reopened attn_out latents (`resample_sites`) takes the rest (every SAE <= 1.9% dead).
EVAL_BATCHES = 150  # x 8 prompts x 128 tokens: >= 100k held-out tokens once padding and special tokens are left out
EVAL_TABLE = "suite_eval.csv"
TRANSCODER_TABLE = "training_metrics.csv"  # the transcoder set's held-out metrics from its suite (beside its weights)
SUITE = "organism"


def source_checkout() -> Path:
    """The checkout this qwen3_scope was imported from; refuses an installed package (a wheel
    install, an editable install's copy elsewhere): the bundler rewrites package files, and those must only
    change in a source tree under version control."""
    package = refuse_installed_package(bundled_root()).parent
    return package.parent


def set_neuronpedia_id(cfg_file: Path, neuronpedia_id: str) -> None:
    """Record the SAE's Neuronpedia id in its cfg.json metadata (SAELens reads `metadata.neuronpedia_id`; the
    registry's `neuronpedia` value alone does not reach it in SAELens 6)."""
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CorruptFileError(
            f"cannot read SAE config {cfg_file} as JSON ({err}); retrain or re-copy the suite."
        ) from err
    cfg.setdefault("metadata", {})["neuronpedia_id"] = neuronpedia_id
    atomic_write_json(cfg_file, cfg, sort_keys=False)


def copy_suite_into_package(
    suite_dir: Path, root: Path | None = None, metrics: dict[str, dict[str, Any]] | None = None
) -> list[dict]:
    """Copy every SAE of a suite to <root>/<id>/ (default: the package's bundled_saes) and return release entries
    pointing there (with `metrics`' l0 / variance_explained, by suite id). Refuses a suite whose configs name a path
    of this machine."""
    root = root or bundled_root()
    entries = []
    for entry in suite_entries(suite_dir, metrics):
        source, target = suite_dir / entry["path"], root / entry["id"]
        hits = machine_paths_in((source / SAE_CFG_FILENAME).read_text())
        if hits:
            raise ReleaseError(
                f"{source / SAE_CFG_FILENAME} names paths of this machine ({hits[0]!r}); retrain the suite "
                "with this version of qwen3-scope (it records portable model and dataset names)."
            )
        target.mkdir(parents=True)
        for name in (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME):
            if (source / name).is_file():
                shutil.copy2(source / name, target / name)
        set_neuronpedia_id(target / SAE_CFG_FILENAME, entry["neuronpedia"])
        entries.append({**entry, "path": BUNDLED_PREFIX + entry["id"]})
    return entries


def build(suite_dir: Path | None, **changes: Any) -> Path:
    repo = source_checkout()  # before anything is trained or written
    if suite_dir is None:
        suite_dir = train_suite(
            organism_suite_config(out=str(repo / "runs" / "bundled_suite"), resume=True, device="cpu", **changes)
        ).suite_dir
    # stage the new tree beside the old one, then swap: a failure leaves the shipped suite as it was
    staging = bundled_root() / f".{SUITE}.new"
    shutil.rmtree(staging, ignore_errors=True)
    entries = copy_suite_into_package(Path(suite_dir), staging)
    old = bundled_root() / f".{SUITE}.old"
    shutil.rmtree(old, ignore_errors=True)
    if (bundled_root() / SUITE).exists():
        (bundled_root() / SUITE).rename(old)
    (staging / SUITE).rename(bundled_root() / SUITE)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    target_yaml = repo / "pretrained_saes.yaml"  # the package's pretrained_saes.yaml links to it
    write_release_file(target_yaml, entries)
    register_release_file(target_yaml)
    # one site at a time: the shared evaluation keeps every batch's passes of every SAE it evaluates, and 27 SAEs x 150
    # batches came to over 24 GiB (the SAEs of one site need a third of that; the tables are the same)
    config = SuiteEvalConfig(device="cpu", n_batches=EVAL_BATCHES)
    table = pd.concat(
        [evaluate_suite(release=RELEASE, pattern=f"{SUITE}/{site}/.*", config=config).table for site in PAPER_SITES],
        ignore_index=True,
    )
    with atomic_path(bundled_root() / SUITE / EVAL_TABLE) as tmp:
        table.to_csv(tmp, index=False)
    write_back_release_yaml(table, target_yaml, release=RELEASE)
    print(table[["sae_id", "l0", "explained_variance", "ce_loss_score", "delta_lm_loss"]].to_string(index=False))
    return bundled_root()


def build_transcoders(suite_dir: Path | None, **changes: Any) -> Path:
    """Train (or take) the organism's transcoder set, replace `bundled_saes/organism/transcoder/` with it, and record
    its entries (with the suite's held-out L0 and EV of the MLP output) in the shipped release file. The bundled SAEs
    and their entries are left as they are."""
    repo = source_checkout()
    started = time.perf_counter()
    if suite_dir is None:
        config = organism_transcoder_config(
            out=str(repo / "runs" / "bundled_transcoders"), resume=True, device="cpu", **changes
        )
        suite_dir = train_suite(config).suite_dir
    suite_dir = Path(suite_dir)
    manifest = SuiteManifest.read(suite_dir)
    metrics = manifest.metrics
    staging = bundled_root() / f".{SUITE}.{TRANSCODER}.new"
    shutil.rmtree(staging, ignore_errors=True)
    entries = [e for e in copy_suite_into_package(suite_dir, staging, metrics) if is_transcoder_id(e["id"])]
    if not entries:
        raise ReleaseError(f"{suite_dir} holds no transcoders; train it with --transcoders.")
    target, old = bundled_root() / SUITE / TRANSCODER, bundled_root() / f".{SUITE}.{TRANSCODER}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    (staging / SUITE / TRANSCODER).rename(target)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    rows = []
    for entry in entries:
        local = entry["id"].split("/", 1)[1]
        record = manifest.saes[local]
        rows.append(
            dict(
                sae_id=entry["id"],
                layer=record["layer"],
                d_sae=record["d_sae"],
                architecture=record["architecture"],
                **metrics[local],
            )
        )
    seconds = sum(float(g.get("seconds") or 0) for g in manifest.groups)
    table = pd.DataFrame(rows).assign(training_seconds=round(seconds, 1))
    with atomic_path(target / TRANSCODER_TABLE) as tmp:
        table.to_csv(tmp, index=False)
    target_yaml = repo / "pretrained_saes.yaml"
    shipped = read_release_yaml(target_yaml).get(RELEASE, {}).get("saes", [])
    kept = [e for e in shipped if str(e["path"]).startswith(BUNDLED_PREFIX) and not is_transcoder_id(e["id"])]
    write_release_file(target_yaml, kept + entries)
    register_release_file(target_yaml)
    print(table.to_string(index=False))
    print(f"transcoders trained in {seconds:.0f} s (bundle built in {time.perf_counter() - started:.0f} s)")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", type=Path, help="an organism suite trained by `qwen3-scope train` (default: train one)"
    )
    parser.add_argument("--tokens", type=int, help="training tokens per SAE (default: organism_suite_config's)")
    parser.add_argument(
        "--transcoders",
        action="store_true",
        help="bundle the organism's transcoder set instead (training.config.organism_transcoder_config)",
    )
    args = parser.parse_args(argv)
    try:
        source_checkout()
    except Qwen3ScopeError as err:
        parser.exit(2, f"qwen3_scope.bundle: error: {err}\n")
    changes = {"training_tokens": args.tokens} if args.tokens else {}
    if args.transcoders:
        print(f"bundled transcoders written to {build_transcoders(args.suite, **changes)}")
        return
    print(f"bundled suite written to {build(args.suite, **changes)}")
    print(f"{len(read_release_yaml(release_file())[RELEASE]['saes'])} ids in {RELEASE}")


if __name__ == "__main__":
    main()

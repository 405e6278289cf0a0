"""Build the organism SAE suite that ships inside the package, reproducibly, with one command.

    python -m qwen3_scope.bundle                      # train, copy into the package, measure, record
    python -m qwen3_scope.bundle --suite DIR          # bundle an already trained organism suite

Why a script: the bundled suite is a release (`qwen3-instruct-sae`, ids `organism/<site>/layer_<L>`) whose
weights, yaml entries (l0, variance explained) and recorded evaluation must agree; this is the one path
that writes all three.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from qwen3_scope.io import atomic_path, refuse_installed_package
from qwen3_scope.releases import (
    RELEASE, read_release_yaml, register_release_file, release_file, suite_entries, write_release_file,
)
from qwen3_scope.sae_loaders import BUNDLED_PREFIX, SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME, bundled_root

BUNDLED_WIDTH = 1024  # 8 x d_model: keeps the 12 shipped SAEs at ~13 MB
BUNDLED_TOKENS = 600_000
EVAL_TABLE = "suite_eval.csv"


def copy_suite_into_package(suite_dir: Path) -> list[dict]:
    """Copy every SAE of a suite to bundled_saes/<id>/ and return release entries pointing there."""
    entries = []
    for entry in suite_entries(suite_dir):
        source, target = suite_dir / entry["path"], bundled_root() / entry["id"]
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME):
            if (source / name).is_file():
                shutil.copy2(source / name, target / name)
        entries.append({**entry, "path": BUNDLED_PREFIX + entry["id"]})
    return entries


def build(suite_dir: Path | None, tokens: int, width: int) -> Path:
    from qwen3_scope.evaluation import evaluate_suite, write_back_release_yaml
    from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig

    if suite_dir is None:
        from qwen3_scope.sites import PAPER_SITES
        from qwen3_scope.training.suite import train_suite

        suite_dir = train_suite(model="organism", recipe="paper", out=Path("runs/bundled_suite"), sites=list(PAPER_SITES),
                                training_tokens=tokens, width=width, fast=None, resume=True).suite_dir
    refuse_installed_package(bundled_root())  # a source checkout only: never rewrite an installed package
    shutil.rmtree(bundled_root(), ignore_errors=True)
    entries = copy_suite_into_package(Path(suite_dir))
    target_yaml = release_file().resolve()  # the repo's top-level pretrained_saes.yaml (the package links to it)
    write_release_file(target_yaml, entries)
    register_release_file(target_yaml)
    result = evaluate_suite(release=RELEASE, pattern="organism/.*", config=SuiteEvalConfig())
    with atomic_path(bundled_root() / "organism" / EVAL_TABLE) as tmp:
        result.table.to_csv(tmp, index=False)
    write_back_release_yaml(result.table, target_yaml, release=RELEASE)
    print(result.table[["sae_id", "l0", "explained_variance", "ce_loss_score", "delta_lm_loss"]].to_string(index=False))
    return bundled_root()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, help="an organism suite trained by `qwen3-scope train` (default: train one)")
    parser.add_argument("--tokens", type=int, default=BUNDLED_TOKENS)
    parser.add_argument("--width", type=int, default=BUNDLED_WIDTH)
    args = parser.parse_args(argv)
    print(f"bundled suite written to {build(args.suite, args.tokens, args.width)}")
    print(f"{len(read_release_yaml(release_file())[RELEASE]['saes'])} ids in {RELEASE}")


if __name__ == "__main__":
    main()

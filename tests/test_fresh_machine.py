"""A fresh machine: build a wheel from this checkout, install it into a throwaway virtual environment outside the
checkout, and from a directory outside the checkout, offline, load every bundled SAE, evaluate the default
release and run the refusal study. Fails if any file in the wheel names a path of the build machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import qwen3_scope

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the checkout as it is now (tracked and new files), built from a copy so the build leaves
    nothing in the checkout."""
    import shutil

    source = tmp_path_factory.mktemp("source") / "qwen3-scope"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name, follow_symlinks=False)
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    import importlib.util

    # offline when this environment has the build backend; otherwise pip fetches it from the package registry
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out), str(source)],
        cwd=out,
        env=env,
    )
    (found,) = out.glob("qwen3_scope-*.whl")
    return found


def test_the_wheel_names_no_path_of_the_build_machine(wheel):
    patterns = [re.escape(str(REPO)), r"/tmp/[\w.-]+", r"/[\w./-]+/qwen3_scope/organism/assets/model"]
    hits = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert any(n.startswith("qwen3_scope/bundled_saes/organism/") and n.endswith("cfg.json") for n in names)
        for name in names:
            text = archive.read(name).decode("utf-8", errors="ignore")
            hits += [f"{name}: {m.group(0)}" for p in patterns for m in re.finditer(p, text)]
    assert not hits, "shipped files name paths of the build machine:\n" + "\n".join(hits[:20])


def test_installed_wheel_works_offline_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QWEN3_SCOPE_RELEASES")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path, env=env)
    python, cli = venv / "bin" / "python", venv / "bin" / "qwen3-scope"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp_path, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    n_bundled = len(qwen3_scope.releases.list_release_saes("^organism/").query("source == 'bundled'"))  # the checkout's
    script = (
        "import qwen3_scope, pathlib\n"
        "from sae_lens import SAE\n"
        "from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory\n"
        f"assert pathlib.Path(qwen3_scope.__file__).is_relative_to({str(venv)!r}), qwen3_scope.__file__\n"
        "ids = [i for i in get_pretrained_saes_directory()['qwen3-instruct-sae'].saes_map if i.startswith('organism/')]\n"
        f"assert len(ids) == {n_bundled}, ids\n"
        "for i in ids:\n"
        "    sae = SAE.from_pretrained('qwen3-instruct-sae', i)\n"
        "    name = sae.cfg.metadata.model_name  # the loader points it at this installation's organism (in memory only)\n"
        f"    assert name == 'organism' or pathlib.Path(name).is_relative_to({str(venv)!r}), name\n"
        "print('loaded', len(ids))\n"
    )
    assert f"loaded {n_bundled}" in _run([str(python), "-c", script], cwd=elsewhere, env=env)
    out = _run(
        [str(cli), "eval", "--batches", "1", "--batch-size", "4", "--device", "cpu", "--out", "eval"],
        cwd=elsewhere,
        env=env,
    )
    assert f"{n_bundled} SAEs" in out and (elsewhere / "eval" / "suite_eval.csv").is_file()
    out = _run(
        [
            str(cli),
            "steer",
            "refusal",
            "--n-prompts",
            "4",
            "--top-k",
            "1",
            "--screen",
            "2",
            "--alphas",
            "2",
            "--max-new-tokens",
            "2",
            "--no-baseline",
            "--device",
            "cpu",
            "--out",
            "steer",
        ],
        cwd=elsewhere,
        env=env,
    )
    assert (elsewhere / "steer").is_dir() and not (REPO / "build").exists()
    # the bundler rewrites package files: it refuses an installed package (and leaves it untouched)
    where = "import pathlib, qwen3_scope; print(pathlib.Path(qwen3_scope.__file__).parent / 'bundled_saes')"
    bundled = Path(_run([str(python), "-c", where], cwd=elsewhere, env=env).strip())
    assert bundled.is_relative_to(venv) and bundled.is_dir(), bundled
    before = sorted(p.relative_to(bundled) for p in bundled.rglob("*"))
    refused = subprocess.run(
        [str(python), "-m", "qwen3_scope.bundle", "--suite", str(elsewhere)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "not a source checkout" in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(p.relative_to(bundled) for p in bundled.rglob("*")) == before

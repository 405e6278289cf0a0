"""A catalogue of bad inputs, across the CLI and the library: each case asserts the error class (or, for the CLI,
exit status 2 and one `qwen3-scope: error:` line, never a traceback), a message that names the problem AND the
fix, and that nothing half-written is left on disk.

Real objects throughout: a tiny random Qwen3 (conftest), SAEs saved by SAELens itself, real corrupt files, a real
full filesystem (a 256 KiB tmpfs, or RLIMIT_FSIZE in a child process where mounting is not allowed), real NaN
activations from the model, and a real SIGINT to a training process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli, suite_for

import qwen3_scope
from qwen3_scope.core import errors

# ------------------------------------------------------------ helpers


def leftovers(root: Path) -> list[str]:
    """Temporary or staging files a failed write could leave behind."""
    return [str(p) for p in Path(root).rglob("*") if p.name.endswith((".tmp", ".old")) or p.name == ".staging"]


def make_sae(folder: Path, model: str, d_in: int = 64, d_sae: int = 128, hook: str = "blocks.1.hook_resid_post"):
    from sae_lens import SAE

    torch.manual_seed(0)
    sae = SAE.from_dict(
        {
            "architecture": "topk",
            "d_in": d_in,
            "d_sae": d_sae,
            "k": 4,
            "dtype": "float32",
            "device": "cpu",
            "metadata": {"hook_name": hook, "model_name": model, "prepend_bos": False},
        }
    )
    sae.save_model(str(folder))
    return folder


@pytest.fixture()
def suite(tmp_path, tiny_qwen3_dir) -> Path:
    """A user's suite directory with one SAE saved by SAELens (SAELens' file layout)."""
    root = tmp_path / "suite"
    make_sae(root / "resid_post" / "layer_1", str(tiny_qwen3_dir))
    return root


@pytest.fixture()
def release(suite, tmp_path):
    """The suite registered as a release in a private release file; returns (release, sae_id, SAE folder)."""
    from qwen3_scope.releases import register_suite

    name = register_suite(suite, release=f"bad-inputs-{tmp_path.name}", release_yaml=tmp_path / "releases.yaml")
    sae_id = yaml.safe_load((tmp_path / "releases.yaml").read_text())[name]["saes"][0]["id"]
    return name, sae_id, suite / "resid_post" / "layer_1"


def load(release) -> None:
    from sae_lens import SAE

    SAE.from_pretrained(release[0], release[1])


# ------------------------------------------------------------ CLI: names and numbers
CLI_CASES = [
    # (id, argv, problem regex, fix regex)
    (
        "unknown-model",
        ["info", "--model", "Qwen/Qwen3-5B"],
        r"unknown model 'Qwen/Qwen3-5B'",
        r"Known names: Qwen/Qwen3-0\.6B",
    ),
    ("unknown-site", ["train", "--sites", "resid", "--plan-only"], r"unknown site 'resid'", r"choose one of resid_pre"),
    ("unknown-layer", ["train", "--layers", "99", "--plan-only"], r"layer 99 is out of range", r"use 0\.\.\d+\b"),
    ("backwards-layers", ["train", "--layers", "3-1", "--plan-only"], r"runs backwards", r"write 1-3"),
    ("malformed-layer", ["train", "--layers", "two", "--plan-only"], r"bad layer 'two'", r"ranges such as 0-8"),
    (
        "unknown-recipe",
        ["train", "--recipe", "gemma", "--plan-only"],
        r"unknown recipe 'gemma'",
        r"choose one of paper, qwen-scope",
    ),
    (
        "unknown-backend",
        ["train", "--backend", "bridge", "--plan-only"],
        r"backend 'bridge' cannot train through SAELens' runners",
        r"use --backend hooked or --backend hf",
    ),
    (
        "malformed-tokens",
        ["train", "--tokens", "12x", "--plan-only"],
        r"'12x' is not a token count",
        r"write e\.g\. 200000, 200k",
    ),
    (
        "too-few-tokens",
        ["train", "--tokens", "10", "--plan-only"],
        r"training_tokens 10 is less than one batch",
        r"train on more tokens",
    ),
    (
        "negative-width",
        ["train", "--width", "-16", "--plan-only"],
        r"width must be a positive whole number, got -16",
        r"write e\.g\. 16384",
    ),
    (
        "zero-width",
        ["train", "--width", "0", "--plan-only"],
        r"width must be a positive whole number, got 0",
        r"write e\.g\.",
    ),
    (
        "zero-k",
        ["train", "--recipe", "qwen-scope", "--k", "0", "--plan-only"],
        r"k must be a positive whole number, got 0",
        r"write e\.g\.",
    ),
    (
        "k-above-width",
        ["train", "--recipe", "qwen-scope", "--k", "100000", "--plan-only"],
        r"k=100000 does not fit",
        r"lower k or raise the width",
    ),
    (
        "k-on-jumprelu",
        ["train", "--k", "50", "--plan-only"],
        r"k only applies to TopK recipes",
        r"recipe 'paper' is jumprelu",
    ),
    (
        "negative-l0",
        ["train", "--l0", "-3", "--plan-only"],
        r"target_l0 must be a positive number, got -3",
        r"write e\.g\. 24",
    ),
    (
        "nan-l0",
        ["train", "--l0", "nan", "--plan-only"],
        r"target_l0 must be a positive number, got nan",
        r"write e\.g\. 24",
    ),
    (
        "l0-above-width",
        ["train", "--l0", "5000", "--plan-only"],
        r"target_l0=5000\.0 does not fit",
        r"lower target_l0 or raise",
    ),
]


@pytest.mark.parametrize(("argv", "problem", "fix"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_names_and_numbers(argv, problem, fix, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a plan-only run must not create anything
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert re.search(problem, err) and re.search(fix, err), err
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------ library: names and numbers
def test_library_names_and_numbers():
    from qwen3_scope.model.family import ModelNotFoundError
    from qwen3_scope.model.sites import UnknownSiteError
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.recipes import RecipeConfigError, UnknownRecipeError, build_suite

    with pytest.raises(ModelNotFoundError, match=r"unknown model 'qwen3-5b'.*Known names"):
        qwen3_scope.resolve_model("qwen3-5b")
    with pytest.raises(UnknownSiteError, match=r"unknown site 'mlp'.*choose one of"):
        qwen3_scope.hook_name("mlp", 0)
    with pytest.raises(UnknownRecipeError, match=r"unknown recipe 'x'; choose one of"):
        suite_for("Qwen/Qwen3-4B", "x")
    with pytest.raises(IndexError, match=r"layer 36 is out of range.*use 0\.\.35"):
        suite_for("Qwen/Qwen3-4B", "paper", layers=[36])
    # SuiteTrainingConfig refuses k=0 and target_l0=-1 itself (the CLI tests above); the builder checks again
    topk, jumprelu = (
        SuiteTrainingConfig(model="Qwen/Qwen3-4B", recipe="qwen-scope"),
        SuiteTrainingConfig(model="Qwen/Qwen3-4B"),
    )
    topk.k, jumprelu.target_l0 = 0, -1
    with pytest.raises(RecipeConfigError, match=r"k=0 does not fit.*lower k or raise the width"):
        build_suite(topk)
    with pytest.raises(RecipeConfigError, match=r"target_l0=-1.*lower target_l0 or raise the width"):
        build_suite(jumprelu)


# ------------------------------------------------------------ suites, cfg.json, weights
def test_missing_suite(capsys, tmp_path):
    code, err = run_cli(["releases", "add", tmp_path / "nope"], capsys)
    assert code == 2 and "does not exist" in err and "train one with `qwen3-scope train`" in err
    assert not (tmp_path / "nope").exists()


def test_empty_suite(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["releases", "add", tmp_path / "empty"], capsys)
    assert code == 2 and "no SAEs under" in err and "expected folders with cfg.json and sae_weights.safetensors" in err
    assert (
        not Path(os.environ["QWEN3_SCOPE_RELEASES"]).exists()
        or "empty" not in Path(os.environ["QWEN3_SCOPE_RELEASES"]).read_text()
    )


def test_suite_with_only_an_unfinished_checkpoint_is_empty(capsys, tmp_path, tiny_qwen3_dir):
    """The one suite scanner skips `.checkpoints/` (unfinished training state), in every reader."""
    make_sae(tmp_path / "s" / ".checkpoints" / "group_00" / "resid_post" / "layer_1", str(tiny_qwen3_dir))
    code, err = run_cli(["releases", "add", tmp_path / "s"], capsys)
    assert code == 2 and "no SAEs under" in err


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("cfg-not-json", r"cfg\.json is missing or not JSON"),
        ("cfg-empty", r"cfg\.json is missing or not JSON"),
        ("cfg-truncated", r"cfg\.json is missing or not JSON"),
        ("cfg-no-d_in", r"not a SAELens SAE config \(no d_in/d_sae\)"),
        ("cfg-missing", r"has no cfg\.json; the suite directory is incomplete"),
        ("weights-missing", r"sae_weights\.safetensors is not a readable safetensors file"),
        ("weights-empty", r"is not a readable safetensors file .*corrupt or truncated"),
        ("weights-truncated", r"is not a readable safetensors file .*corrupt or truncated"),
        ("weights-wrong-shape", r"W_enc is \(64, 64\), but cfg\.json says \(64, 128\)"),
    ],
)
def test_damaged_sae_files(release, damage, problem, tiny_qwen3_dir):
    folder = release[2]
    cfg, weights = folder / "cfg.json", folder / "sae_weights.safetensors"
    if damage == "cfg-not-json":
        cfg.write_text("{not json")
    elif damage == "cfg-empty":
        cfg.write_text("")
    elif damage == "cfg-truncated":
        cfg.write_text(cfg.read_text()[:40])
    elif damage == "cfg-no-d_in":
        cfg.write_text(json.dumps({k: v for k, v in json.loads(cfg.read_text()).items() if k != "d_in"}))
    elif damage == "cfg-missing":
        cfg.unlink()
    elif damage == "weights-missing":
        weights.unlink()
    elif damage == "weights-empty":
        weights.write_bytes(b"")
    elif damage == "weights-truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "weights-wrong-shape":
        make_sae(folder, str(tiny_qwen3_dir), d_sae=64)
        cfg.write_text(cfg.read_text().replace('"d_sae": 64', '"d_sae": 128'))
    with pytest.raises(errors.MissingFileError, match=problem) as info:
        load(release)
    assert re.search(r"[Rr]e-(train|download)|--resume|remove it from the release", str(info.value)), info.value


def test_d_in_mismatch_between_sae_and_model(tmp_path, tiny_qwen3_dir):
    from qwen3_scope.saes.loaders import load_qwen_scope_file

    path = tmp_path / "layer1.sae.pt"
    torch.save(
        {
            "W_enc": torch.zeros(128, 64),
            "W_dec": torch.zeros(64, 128),
            "b_enc": torch.zeros(128),
            "b_dec": torch.zeros(64),
        },
        path,
    )
    with pytest.raises(
        errors.ModelMismatchError,
        match=r"has d_in 64, but organism's residual stream is \d+ wide"
        r".*use the SAE with the model it was trained for",
    ):
        load_qwen_scope_file(path, model="organism")


def test_d_in_mismatch_in_the_cli_eval(capsys, suite, tmp_path):
    code, err = run_cli(
        ["eval", "--suite", suite, "--model", "organism", "--out", tmp_path / "eval", "--batches", "1"], capsys
    )
    assert code == 2 and re.search(r"d_in|wide|width", err) and re.search(r"model", err), err
    assert not leftovers(tmp_path)


# ------------------------------------------------------------ releases
@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../outside", "leaves its repository"),
        ("/etc", "leaves its repository"),
        ("bundled:../../x", "leaves its repository"),
        ("a/../../b", "contains '..'"),
    ],
)
def test_release_paths_stay_inside_their_repo(tmp_path, path, problem):
    from qwen3_scope.releases import register_release_file

    file = tmp_path / "r.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "escape": {
                    "repo_id": str(tmp_path),
                    "model": "m",
                    "conversion_func": "qwen3_scope",
                    "saes": [{"id": "m/resid_post/layer_0", "path": path}],
                }
            }
        )
    )
    with pytest.raises(errors.ReleaseError, match=problem) as info:
        register_release_file(file)
    assert "must be relative folders inside the repo" in str(info.value)


def test_user_release_cannot_shadow_a_saelens_release(tmp_path, suite, capsys):
    code, err = run_cli(["releases", "add", suite, "--release", "gpt2-small-res-jb"], capsys)
    assert code == 2 and "already taken by SAELens" in err and "choose another with --release NAME" in err
    file = tmp_path / "r.yaml"
    file.write_text(yaml.safe_dump({"gpt2-small-res-jb": {"repo_id": str(suite), "model": "m", "saes": []}}))
    from qwen3_scope.releases import register_release_file

    with pytest.raises(errors.ReleaseError, match="SAELens' own pretrained_saes.yaml.*Rename it"):
        register_release_file(file)


def test_unpinned_hub_release_is_never_downloaded_and_says_how_to_train(monkeypatch, tmp_path):
    from sae_lens import SAE

    from qwen3_scope.saes.loaders import SAEWeightsUnavailableError

    monkeypatch.chdir(tmp_path)  # a local folder named like the hub id must not shadow it
    make_sae(tmp_path / "qwen3-scope" / "qwen3-instruct-sae" / "qwen3-4b" / "mlp_out" / "layer_12", "x", d_in=2560)
    with pytest.raises(
        SAEWeightsUnavailableError, match=r"(?s)no pinned revision.*qwen3-scope train --model Qwen/Qwen3-4B"
    ):
        SAE.from_pretrained("qwen3-instruct-sae", "qwen3-4b/mlp_out/layer_12")


def test_malformed_revision_pin(tmp_path):
    from qwen3_scope.releases import register_release_file

    file = tmp_path / "r.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "pinned": {
                    "repo_id": "o/n",
                    "model": "m",
                    "revision": "main",
                    "saes": [{"id": "m/resid_post/layer_0", "path": "resid_post/layer_0"}],
                }
            }
        )
    )
    with pytest.raises(errors.ReleaseError, match=r"revision 'main'.*pin a full 40-character commit sha"):
        register_release_file(file)


# ------------------------------------------------------------ prompt files
@pytest.mark.parametrize(
    ("name", "content", "problem", "fix"),
    [
        ("empty.jsonl", "", r"is empty: it holds no prompts", r"one prompt row per line"),
        ("unlabelled.jsonl", '{"label": 1}\n', r"has none of the prompt fields", r"use AdvBench rows"),
        ("wrong.jsonl", "just some text\n", r"is not valid JSON lines", r"."),
        ("list.json", "[1, 2]", r"row 1 is a int, not an object with a prompt field", r"prompt field"),
    ],
)
def test_bad_prompt_files(tmp_path, name, content, problem, fix):
    from qwen3_scope.steering.prompts import PromptFileError, load_prompt_file

    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PromptFileError, match=problem) as info:
        load_prompt_file(path)
    assert re.search(fix, str(info.value))


def test_bad_prompt_file_in_the_cli(tmp_path, capsys):
    (tmp_path / "fr.jsonl").write_text("")
    (tmp_path / "en.jsonl").write_text('{"prompt": "hello"}\n')
    code, err = run_cli(
        [
            "steer",
            "language",
            "--french",
            tmp_path / "fr.jsonl",
            "--english",
            tmp_path / "en.jsonl",
            "--out",
            tmp_path / "out",
        ],
        capsys,
    )
    assert code == 2 and "is empty: it holds no prompts" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ------------------------------------------------------------ files the evaluation, steering and export read
DAMAGED = {  # one real damaged file per kind of damage (missing: the file is not written)
    "empty": b"",
    "truncated": b'{"prompt": "how do I bake bread"}\n{"prompt": "how do I',
    "corrupt": bytes(range(128, 256)) * 4,  # not UTF-8, not JSON
}


def _write(path: Path, damage: str, truncated: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage != "missing":
        path.write_bytes(truncated if damage == "truncated" and truncated is not None else DAMAGED[damage])
    return path


def _names_file(info, path: Path) -> None:
    assert isinstance(info.value, errors.Qwen3ScopeError), type(info.value)
    assert str(path) in str(info.value) or path.name in str(info.value), info.value


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "corrupt"])
@pytest.mark.parametrize("name", ["harmful.jsonl", "harmful.json", "harmful.csv"])
def test_damaged_prompt_files(tmp_path, name, damage):
    from qwen3_scope.steering.prompts import load_prompt_file

    path = _write(tmp_path / name, damage, b'[{"prompt": "how do I bake' if name.endswith(".json") else None)
    if name.endswith(".csv") and damage == "truncated":
        path.write_bytes(b'prompt\n"how do I bake bread\n')  # an unclosed quote: the file was cut mid-field
    with pytest.raises(errors.Qwen3ScopeError) as info:
        load_prompt_file(path)
    _names_file(info, path)
    if damage == "missing":
        assert isinstance(info.value, errors.MissingFileError) and "does not exist" in str(info.value)
    else:
        assert isinstance(info.value, errors.CorruptFileError)
        assert re.search(
            r"empty|not valid (JSON|CSV)|not UTF-8|not a readable prompt file|prompt field", str(info.value)
        ), info.value


@pytest.mark.parametrize(
    ("name", "damage"),
    [(n, d) for n in ("heldout.jsonl", "heldout.parquet") for d in ("missing", "empty", "truncated", "corrupt")]
    + [("heldout.txt", "missing"), ("heldout.txt", "empty")],  # any other bytes are a .txt document
)
def test_damaged_held_out_text(tmp_path, name, damage):
    from qwen3_scope.evaluation.held_out import read_documents

    path = _write(tmp_path / name, damage, b"PAR1\x15\x04" if name.endswith(".parquet") else None)
    with pytest.raises(errors.Qwen3ScopeError) as info:
        read_documents(path)
    _names_file(info, path)
    expected = errors.MissingFileError if damage == "missing" else errors.CorruptFileError
    assert isinstance(info.value, expected), info.value
    assert re.search(r"does not exist|holds no text|cannot be read", str(info.value)), info.value


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt", "not-an-object"])
def test_damaged_suite_manifest_names_the_file(suite, damage):
    """A suite's manifest.json is optional (the recipe label); one that is there but damaged is named."""
    from qwen3_scope.evaluation.suite_eval import entries_from_directory

    path = suite / "manifest.json"
    if damage == "not-an-object":
        path.write_text("[1, 2]")
    else:
        _write(path, damage, b'{"recipe": {"label": "pap')
    with pytest.raises(errors.CorruptFileError, match="is not a suite manifest") as info:
        entries_from_directory(suite)
    _names_file(info, path)
    assert "re-run the training or delete the file" in str(info.value)


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt"])
def test_damaged_suite_held_out_documents(tmp_path, damage):
    from qwen3_scope.evaluation.held_out import SUITE_HELD_OUT, suite_held_out_texts

    path = _write(tmp_path / "suite" / SUITE_HELD_OUT, damage, b"PAR1\x15\x04")
    with pytest.raises(errors.CorruptFileError, match="is not the suite's held-out documents") as info:
        suite_held_out_texts(tmp_path / "suite")
    _names_file(info, path)
    assert "--texts FILE" in str(info.value)


def _export_folder(root: Path) -> Path:
    """A dashboard export's files as `run_export` writes them (the manifest, one SAEDashboard folder)."""
    folder = root / "saedashboard" / "m_set_blocks.1.hook_resid_post_8"
    folder.mkdir(parents=True)
    manifest = {
        "suite": "s",
        "sae_ids": ["resid_post/layer_1"],
        "neuronpedia_ids": {"resid_post/layer_1": "m/1-set"},
        "folders": {"resid_post/layer_1": folder.name},
        "settings": {},
        "dataset": "d",
        "complete": True,
    }
    (root / "export.json").write_text(json.dumps(manifest))
    (folder / "run_settings.json").write_text(json.dumps({"hook_name": "blocks.1.hook_resid_post", "d_sae": 8}))
    (folder / "batch-0.json").write_text(json.dumps({"layer": 1, "sae_set": "set", "features": []}))
    return folder


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "corrupt", "not-a-manifest"])
@pytest.mark.parametrize("reader", ["viewer", "viewer_link", "neuronpedia_api"])
def test_damaged_export_manifest(tmp_path, reader, damage):
    from qwen3_scope.export.upload import build_api_payloads
    from qwen3_scope.export.viewer import viewer_link, write_viewer

    _export_folder(tmp_path / "export")
    path = tmp_path / "export" / "export.json"
    path.unlink()
    if damage == "not-a-manifest":
        path.write_text('{"sae_ids": []}')
    else:
        _write(path, damage, b'{"suite": "s", "sae_ids": ["resid_po')
    read = {
        "viewer": lambda: write_viewer(tmp_path / "export"),
        "viewer_link": lambda: viewer_link(tmp_path / "export", "resid_post/layer_1", 0),
        "neuronpedia_api": lambda: build_api_payloads(tmp_path / "export", None),
    }[reader]
    with pytest.raises(errors.Qwen3ScopeError) as info:
        read()
    _names_file(info, path)
    expected = errors.MissingFileError if damage == "missing" else errors.CorruptFileError
    assert isinstance(info.value, expected), info.value
    assert re.search(r"qwen3-scope export neuronpedia|re-run the export", str(info.value)), info.value
    assert not (tmp_path / "export" / "viewer").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt"])
@pytest.mark.parametrize("file", ["batch-0.json", "run_settings.json"])
def test_damaged_export_batch_files(tmp_path, file, damage):
    from qwen3_scope.export.upload import build_api_payloads
    from qwen3_scope.export.viewer import write_viewer

    folder = _export_folder(tmp_path / "export")
    _write(folder / file, damage, b'{"layer": 1, "sae_set": "se')
    read = (lambda: write_viewer(tmp_path / "export")) if file.startswith("batch") else None
    read = read or (lambda: build_api_payloads(tmp_path / "export", None))
    with pytest.raises(errors.CorruptFileError, match=r"is empty|is not valid JSON") as info:
        read()
    _names_file(info, folder / file)
    assert "re-run the export" in str(info.value)


def test_export_into_a_folder_with_a_damaged_manifest_is_refused(tmp_path, suite, tiny_qwen3_dir):
    from qwen3_scope.export.config import ExportConfig
    from qwen3_scope.export.job import ExportConflictError, run_export

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "export.json").write_text('{"suite": "other", "sae_ids": [')
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(["the cat sat on the mat and the dog ran in the park"] * 40))
    cfg = ExportConfig(
        out=tmp_path / "out",
        suite=suite,
        model=str(tiny_qwen3_dir),
        texts=texts,
        n_prompts=4,
        context=8,
        progress=False,
    )
    with pytest.raises(ExportConflictError, match=r"export\.json cannot be read .*not valid JSON.*--overwrite") as info:
        run_export(cfg)
    assert isinstance(info.value, errors.ConfigError)


# ------------------------------------------------------------ disk full
@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs (root can mount one); None where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_while_saving_keeps_the_old_file(tiny_disk, tmp_path):
    from qwen3_scope.core.io import atomic_save_safetensors, atomic_write_text

    if tiny_disk is None:  # no mount allowed: the same write error from a file-size limit in a child process
        target = tmp_path / "f.txt"
        target.write_text("old")
        code = textwrap.dedent(f"""
            import resource, signal, sys
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
            from qwen3_scope.core.errors import DiskFullError
            from qwen3_scope.core.io import atomic_write_text
            try:
                atomic_write_text({str(target)!r}, "x" * 100_000)
            except DiskFullError as err:
                print("DiskFullError", err)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.stdout.startswith("DiskFullError no space left"), out.stdout + out.stderr
        assert target.read_text() == "old" and not leftovers(tmp_path)
        return
    target = tiny_disk / "notes.txt"
    atomic_write_text(target, "old")
    with pytest.raises(errors.DiskFullError, match=r"no space left while writing .*notes\.txt.*Free disk space"):
        atomic_write_text(target, "x" * 1_000_000)
    assert target.read_text() == "old" and not leftovers(tiny_disk)
    with pytest.raises(errors.DiskFullError, match="nothing half-written was kept"):
        atomic_save_safetensors(tiny_disk / "w.safetensors", {"w": torch.zeros(100_000)})
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["notes.txt"]


def test_disk_full_in_the_cli(tiny_disk, suite, capsys, monkeypatch, tmp_path):
    disk = tiny_disk
    if disk is None:
        pytest.fail("this test needs a tmpfs mount (run as root, as CI does); the library test covers RLIMIT_FSIZE")
    release_file = disk / "releases.yaml"
    release_file.write_text("# the user's existing releases\n")
    (disk / "filler").write_bytes(b"\0" * (256 * 1024 - 8192))
    big = suite.parent / "big"
    for layer in range(40):  # enough ids that the release yaml no longer fits
        make_sae(big / "resid_post" / f"layer_{layer}", "organism", d_in=128, d_sae=8)
    monkeypatch.setenv("QWEN3_SCOPE_RELEASES", str(release_file))
    code, err = run_cli(["releases", "add", big], capsys)
    assert code == 2 and "no space left" in err and "Free disk space" in err, err
    assert release_file.read_text() == "# the user's existing releases\n" and not leftovers(disk)


# ------------------------------------------------------------ training: NaN and Ctrl-C
def _chats(path: Path) -> Path:
    import random

    from conftest import TINY_TEXT

    rng, words = random.Random(0), " ".join(TINY_TEXT).split()
    rows = [
        {
            "messages": [
                {"role": "user", "content": rng.choice(TINY_TEXT)},
                {"role": "assistant", "content": " ".join(rng.sample(words, 8))},
            ]
        }
        for _ in range(1500)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TRAIN = dict(recipe="paper", layers=[1], sites=["resid_post"], training_tokens=8192, checkpoint_every_tokens=2048)


def test_nan_activations_stop_training_naming_step_and_hook(tiny_qwen3_dir, tmp_path):
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    model = qwen3_scope.load_model(str(tiny_qwen3_dir))
    armed = []

    def poison(act, hook):  # a real model whose layer 0 starts producing NaN after the first checkpoint
        return act * float("nan") if armed else act

    model.add_perma_hook("blocks.0.hook_resid_post", poison)
    out = tmp_path / "suite"
    with pytest.raises(errors.TrainingDivergedError) as info:
        train_suite(
            SuiteTrainingConfig(model=str(tiny_qwen3_dir), out=out, dataset=str(_chats(tmp_path / "c.jsonl")), **TRAIN),
            progress=False,
            loaded_model=model,
            on_checkpoint=lambda group, step: armed.append(step),
        )
    message = str(info.value)
    assert re.search(
        r"non-finite activations \(NaN/inf\) at hook 'blocks\.1\.hook_resid_post' at training step \d+", message
    ), message
    assert "The last good checkpoint" in message and "--resume" in message
    step = int(re.search(r"training step (\d+)", message)[1])
    latest = json.loads((out / ".checkpoints" / "group_00" / "latest.json").read_text())
    assert 0 < latest["step"] <= step and (out / ".checkpoints" / "group_00" / latest["checkpoint"]).is_dir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["groups"][0]["status"] == "failed"
    assert not (out / "resid_post").exists() and not leftovers(out)  # no SAE written from poisoned training


# The child: the real CLI (`qwen3-scope train`), with train_suite's library hook `on_checkpoint` telling the test when
# the first checkpoint is on disk and then waiting there for the Ctrl-C. Training cannot finish before the signal,
# whatever the machine's speed, and the test never waits for time to pass.
CTRL_C_CHILD = """
import functools, sys, threading
import qwen3_scope.training.suite as suite

def wait_for_ctrl_c(group, step):
    print(f"checkpoint written: group {group} step {step}", flush=True)
    never = threading.Event()
    while not never.wait(1.0):  # only SIGINT (KeyboardInterrupt, raised here) leaves this wait
        pass

@functools.wraps(suite.train_suite)
def train_suite(*args, on_checkpoint=None, **kwargs):
    return train(*args, on_checkpoint=on_checkpoint or wait_for_ctrl_c, **kwargs)


train, suite.train_suite = suite.train_suite, train_suite
from qwen3_scope.cli import main  # after the hook: the CLI calls the wrapped train_suite

sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_training_keeps_the_checkpoint_and_resume_finishes(tiny_qwen3_dir, tmp_path, capsys):
    out, data = tmp_path / "suite", _chats(tmp_path / "c.jsonl")
    argv = [
        "train",
        "--model",
        tiny_qwen3_dir,
        "--dataset",
        data,
        "--out",
        out,
        "--layers",
        "1",
        "--sites",
        "resid_post",
        "--tokens",
        "8192",
        "--checkpoint-every",
        "2048",
        "--threads",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    stderr_file = tmp_path / "stderr.txt"
    with stderr_file.open("w") as stderr:  # a file, not a pipe: tqdm's output never fills a buffer and blocks
        proc = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_CHILD, *map(str, argv)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        for line in proc.stdout:  # ends when the child exits (its stdout closes)
            if line.startswith("checkpoint written"):
                break
        else:
            proc.wait()
            pytest.fail(f"training ended before its first checkpoint: {stderr_file.read_text()[-2000:]}")
        assert list(out.glob(".checkpoints/group_00/step_*")), "the checkpoint is on disk when the hook runs"
        proc.send_signal(signal.SIGINT)
        proc.stdout.read()  # to the end: the child has exited (or closed its stdout on the way out)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    err = stderr_file.read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err and "--resume" in err, err[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["groups"][0]["status"] == "interrupted"
    assert list(out.glob(".checkpoints/group_00/step_*")), "the last checkpoint must survive Ctrl-C"
    assert not (out / "resid_post").exists()
    code, err = run_cli([*argv, "--resume"], capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["groups"][0]["resumed_from_step"] > 0
    from sae_lens import SAE

    assert SAE.load_from_disk(str(out / "resid_post" / "layer_1")).cfg.d_in == 64
    assert not leftovers(out)


# ------------------------------------------------------------ versions
def test_untested_sae_lens_version_is_refused_at_import():
    code = (
        "import importlib.metadata as m; real = m.version; "
        "m.version = lambda name: '6.60.0' if name == 'sae-lens' else real(name); import qwen3_scope"
    )
    env = {k: v for k, v in os.environ.items() if k != "QWEN3_SCOPE_SKIP_VERSION_CHECK"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode != 0
    assert "IncompatibleVersionError" in out.stderr and "sae-lens 6.60.0 is installed" in out.stderr
    assert "pip install 'sae-lens>=6.54,<6.55'" in out.stderr


# ------------------------------------------------------------ labelled data files of the applications
APP_DAMAGE = {  # real damaged files (missing: the file is not written)
    "empty": b"",
    "truncated": b'{"text": "you fool", "label": "toxic"}\n{"text": "thanks a lo',
    "corrupt": bytes(range(128, 256)) * 4,  # not UTF-8, not JSON
}
APP_CSV_DAMAGE = {"empty": b"", "truncated": b'text,label\n"you fool,toxic\n', "corrupt": APP_DAMAGE["corrupt"]}


def _app_readers():
    from qwen3_scope.apps.redundancy import load_benchmarks_file
    from qwen3_scope.apps.toxicity import load_labelled_file
    from qwen3_scope.apps.tuning import read_chats, read_jsonl

    return {
        "toxicity": load_labelled_file,
        "redundancy": load_benchmarks_file,
        "prompts": lambda p: read_jsonl(p, "prompt", "held-out harmful"),
        "chats": read_chats,
    }


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "corrupt"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
@pytest.mark.parametrize("reader", ["toxicity", "redundancy", "prompts", "chats"])
def test_damaged_app_data_files_name_the_file(tmp_path, reader, suffix, damage):
    path = tmp_path / f"data{suffix}"
    if damage != "missing":
        path.write_bytes((APP_CSV_DAMAGE if suffix == ".csv" else APP_DAMAGE)[damage])
    with pytest.raises(errors.Qwen3ScopeError) as info:
        _app_readers()[reader](path)
    assert str(path) in str(info.value), info.value
    if damage == "missing":
        assert isinstance(info.value, errors.MissingFileError) and "does not exist" in str(info.value)
    else:
        assert isinstance(info.value, errors.CorruptFileError), type(info.value)
        assert re.search(r"is empty|cannot be read|not valid|not UTF-8", str(info.value)), info.value
        assert "jsonl/json/csv" in str(info.value) or "it needs rows with" in str(info.value)
    assert isinstance(info.value, ValueError | FileNotFoundError)  # the builtin callers catch still matches


def test_damaged_labelled_file_in_the_cli(tmp_path, capsys):
    """A truncated labelled file fails before any model loads: one error line naming it, no outputs."""
    bad, good = tmp_path / "disc.jsonl", tmp_path / "test.jsonl"
    bad.write_bytes(APP_DAMAGE["truncated"])
    good.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    argv = ["apps", "toxicity", "--out", tmp_path / "out", "--discovery-file", bad, "--test-file", good]
    code, err = run_cli([*argv, "--device", "cpu"], capsys)
    assert code == 2 and str(bad) in err and re.search(r"not valid JSON lines|cannot be read", err), err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_app_input_error_is_a_config_error():
    from qwen3_scope.apps import AppInputError

    assert issubclass(AppInputError, errors.ConfigError) and issubclass(AppInputError, ValueError)


# ------------------------------------------------------------ files read by core/, model/, saes/, releases
# Every file kind these layers read, each missing, empty, truncated and corrupt: a Qwen3ScopeError naming the file.
FILE_DAMAGE = ("missing", "empty", "truncated", "corrupt")


def _damage(path: Path, damage: str, corrupt: bytes) -> Path:
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(corrupt)
    return path


def _names(err: BaseException, path: Path) -> None:
    assert isinstance(err, errors.Qwen3ScopeError), type(err).__mro__
    assert str(path) in str(err), err


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_sae_cfg_json(tmp_path, tiny_qwen3_dir, damage):
    from qwen3_scope.saes.loaders import read_sae_cfg

    folder = make_sae(tmp_path / "resid_post" / "layer_1", str(tiny_qwen3_dir))
    cfg = _damage(folder / "cfg.json", damage, b"\xff\xfe not json")
    with pytest.raises(errors.Qwen3ScopeError) as info:
        read_sae_cfg(cfg)
    _names(info.value, cfg)
    assert "SAELens" in str(info.value) and re.search(r"[Rr]e-(train|download)", str(info.value))
    assert isinstance(info.value, errors.MissingFileError if damage == "missing" else errors.CorruptFileError)


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt"])
def test_damaged_cfg_json_in_a_suite_being_registered(suite, tmp_path, damage):
    from qwen3_scope.releases import register_suite

    cfg = _damage(suite / "resid_post" / "layer_1" / "cfg.json", damage, b"[1, 2, 3]")
    with pytest.raises(errors.CorruptFileError) as info:
        register_suite(suite, release="damaged", release_yaml=tmp_path / "releases.yaml")
    _names(info.value, cfg)
    assert not (tmp_path / "releases.yaml").exists()


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_sparsity_safetensors(release, damage):
    sparsity = release[2] / "sparsity.safetensors"
    from safetensors.torch import save_file

    save_file({"sparsity": torch.zeros(128)}, str(sparsity))
    _damage(sparsity, damage, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    if damage == "missing":  # sparsity is optional
        load(release)
        return
    with pytest.raises(errors.CorruptFileError) as info:
        load(release)
    _names(info.value, sparsity)


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_release_yaml(tmp_path, suite, damage):
    from qwen3_scope.releases import register_release_file

    file = tmp_path / "r.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                f"damaged-{damage}": {
                    "repo_id": str(suite),
                    "model": "m",
                    "conversion_func": "qwen3_scope",
                    "saes": [{"id": "m/resid_post/layer_1", "path": "resid_post/layer_1"}],
                }
            },
            sort_keys=False,
        )
    )
    _damage(file, damage, b"damaged: {repo_id: [unclosed\n")
    with pytest.raises(errors.Qwen3ScopeError) as info:
        register_release_file(file)
    _names(info.value, file)
    assert re.search(r"pretrained_saes\.yaml|release file", str(info.value)), info.value
    assert isinstance(info.value, ValueError | FileNotFoundError)


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_config_file(tmp_path, damage):
    from qwen3_scope.core.config_cli import ConfigFileError, read_config_file
    from qwen3_scope.core.devices import PlacementOptions

    file = tmp_path / "job.yaml"
    file.write_text('device: cpu\ndtype: "bfloat16"\nsae_dtype: float32\n')
    _damage(file, damage, b"device: [cpu\n\x00")
    with pytest.raises(ConfigFileError) as info:
        read_config_file(PlacementOptions, file)
    _names(info.value, file)
    assert "mapping of PlacementOptions fields" in str(info.value), info.value
    assert isinstance(info.value, errors.MissingFileError if damage == "missing" else errors.CorruptFileError)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_rows_file(tmp_path, damage, suffix):
    from qwen3_scope.core.io import RowsFileError, read_rows

    path = tmp_path / f"rows{suffix}"
    rows = [{"prompt": f"question number {i}", "label": str(i % 2)} for i in range(5)]  # half cuts a row
    if suffix == ".csv":
        path.write_text("prompt,label\n" + "".join(f"{r['prompt']},{r['label']}\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _damage(path, damage, b'a,b\n1,2,3,4\n"x' if suffix == ".csv" else b"\xff\xfe{not json")
    if damage == "empty":  # no rows: the caller says what they were for (see test_bad_prompt_files)
        assert read_rows(path) == []
        return
    if damage == "truncated" and suffix == ".csv":  # a CSV cut inside a row is still CSV: fewer rows
        assert 0 < len(read_rows(path)) < len(rows)
        return
    with pytest.raises(RowsFileError) as info:
        read_rows(path)
    _names(info.value, path)
    assert isinstance(info.value, errors.MissingFileError if damage == "missing" else errors.CorruptFileError)


@pytest.fixture()
def checkpoint(tmp_path, tiny_qwen3_dir) -> Path:
    import shutil

    return Path(shutil.copytree(tiny_qwen3_dir, tmp_path / "checkpoint"))


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_checkpoint_config_json(checkpoint, damage):
    config = _damage(checkpoint / "config.json", damage, b'{"model_type": "qwen3"}')
    with pytest.raises(errors.Qwen3ScopeError) as info:
        qwen3_scope.resolve_model(checkpoint)
    assert "config.json" in str(info.value) and str(checkpoint) in str(info.value), info.value
    assert isinstance(info.value, errors.CorruptFileError) and isinstance(info.value, ValueError)
    if damage != "missing":
        _names(info.value, config)


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_checkpoint_weights(checkpoint, damage):
    weights = _damage(checkpoint / "model.safetensors", damage, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(errors.Qwen3ScopeError) as info:
        qwen3_scope.load_model(checkpoint, backend="hf")
    if damage == "missing":
        assert isinstance(info.value, errors.MissingFileError) and "no weight files" in str(info.value)
        assert str(checkpoint) in str(info.value)
    else:
        assert isinstance(info.value, errors.CorruptFileError)
        _names(info.value, weights)


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_tokenizer_json(checkpoint, damage):
    tokenizer = checkpoint / "tokenizer.json"
    if damage == "missing":
        (checkpoint / "tokenizer_config.json").unlink()
    _damage(tokenizer, damage, b"\xff\xfe not a tokenizer")
    with pytest.raises(errors.Qwen3ScopeError) as info:
        qwen3_scope.load_tokenizer(checkpoint)
    if damage == "missing":
        assert isinstance(info.value, errors.MissingFileError) and "has no tokenizer files" in str(info.value)
        assert str(checkpoint) in str(info.value)
    else:
        assert isinstance(info.value, errors.CorruptFileError)
        _names(info.value, tokenizer)


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_damaged_qwen_scope_pt_file(tmp_path, damage):
    from qwen3_scope.saes.loaders import load_qwen_scope_file

    path = tmp_path / "layer1.sae.pt"
    torch.save({"W_enc": torch.zeros(8, 4), "W_dec": torch.zeros(4, 8), "b_enc": torch.zeros(8)}, path)
    _damage(path, damage, b"PK\x03\x04 not a zip archive")
    with pytest.raises(errors.Qwen3ScopeError) as info:
        load_qwen_scope_file(path, model="organism")
    _names(info.value, path)
    assert isinstance(info.value, errors.MissingFileError if damage == "missing" else errors.CorruptFileError)


def test_module_errors_are_qwen3_scope_errors_and_keep_their_builtin():
    """Module error classes of core/, model/ and saes/: in the family, and still what `except ValueError` catches."""
    from qwen3_scope.core.config_cli import ConfigFileError
    from qwen3_scope.core.devices import DeviceError
    from qwen3_scope.core.io import RowsFileError
    from qwen3_scope.model.chat import ThinkingModeError
    from qwen3_scope.model.family import LayerOutOfRangeError, ModelNotFoundError
    from qwen3_scope.model.loading import CorruptWeightsError, UnsupportedModelError, WeightsNotFoundError
    from qwen3_scope.model.sites import SiteUnavailableError, UnknownBackendError, UnknownHookError, UnknownSiteError

    for cls, builtin in [
        (ConfigFileError, ValueError),
        (DeviceError, ValueError),
        (RowsFileError, ValueError),
        (ThinkingModeError, ValueError),
        (ModelNotFoundError, ValueError),
        (LayerOutOfRangeError, IndexError),
        (CorruptWeightsError, ValueError),
        (WeightsNotFoundError, FileNotFoundError),
        (UnsupportedModelError, TypeError),
        (UnknownSiteError, ValueError),
        (SiteUnavailableError, ValueError),
        (UnknownBackendError, ValueError),
        (UnknownHookError, ValueError),
    ]:
        assert issubclass(cls, errors.Qwen3ScopeError) and issubclass(cls, builtin), cls

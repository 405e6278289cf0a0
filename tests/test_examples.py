"""Every script in examples/ runs in its quick mode, offline, and prints what it promises.

Each runs as a researcher would start it (`python examples/X.py --quick --out DIR`, HF_HUB_OFFLINE=1) in a fresh
process from a scratch working directory, so an example that writes outside `--out` or needs the network fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(tmp_path: Path, name: str, *args: str, **env: str) -> str:
    work = tmp_path / "cwd"
    work.mkdir()
    environ = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        **env,
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--quick", "--out", str(out), *args],
        cwd=work,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    assert not any(work.iterdir()), f"{name} wrote into its working directory: {list(work.iterdir())}"
    return proc.stdout


def test_every_example_is_tested_and_documented():
    tested = set(re.findall(r'"(\w+\.py)"', Path(__file__).read_text()))
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts <= tested, f"examples without a test: {sorted(scripts - tested)}"
    readme = (EXAMPLES.parent / "README.md").read_text()
    for name in scripts - {"quickstart.py"}:
        text = (EXAMPLES / name).read_text()
        assert text.startswith('"""') and f"python examples/{name}" in text, f"{name} needs a docstring with its usage"
        assert "--quick" in text and f"examples/{name}" in readme, name


def test_quickstart(tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "next-token candidates:" in proc.stdout and "blocks.3.hook_mlp_out" in proc.stdout


def test_load_and_splice(tmp_path):
    out = run_example(tmp_path, "load_and_splice.py")
    ce = re.search(r"CE without SAE (\d+\.\d+) \| with SAE (\d+\.\d+) \(run_with_saes\) \| (\d+\.\d+) \(add_sae\)", out)
    assert ce, out
    clean, spliced, attached = map(float, ce.groups())
    assert spliced == attached  # add_sae and run_with_saes splice the same SAE
    assert abs(spliced - clean) < 0.5  # the bundled SAE barely changes the answer's CE


def test_train_from_yaml(tmp_path):
    out = run_example(tmp_path, "train_from_yaml.py")
    assert "mlp_out/layer_2" in out and "suite written to" in out
    assert (tmp_path / "out" / "suite" / "mlp_out" / "layer_2" / "sae_weights.safetensors").is_file()


def test_evaluate(tmp_path):
    out = run_example(tmp_path, "evaluate.py")
    assert "organism/mlp_out/layer_2" in out and "explained_variance" in out
    assert (tmp_path / "out" / "suite_eval.csv").is_file()


def test_steer(tmp_path):
    out = run_example(tmp_path, "steer.py")
    rates = [float(r) for r in re.findall(r"refusal rate (\d\.\d\d)", out)]
    assert len(rates) == 2 and rates[1] > rates[0], out  # the refusal latent induces refusal on harmless prompts


def test_export_and_upload(tmp_path):
    out = run_example(tmp_path, "export_and_upload.py")
    assert "organism/2-qwen3scope-mlpout-1k" in out and "nothing pushed" in out
    hub = tmp_path / "out" / "hub"
    assert (hub / "README.md").is_file() and (hub / "organism" / "mlp_out" / "layer_2" / "cfg.json").is_file()
    assert (tmp_path / "out" / "dashboards" / "viewer" / "index.html").is_file()


def test_real_qwen3_gpu_stops_at_the_network_boundary(tmp_path):
    # an empty hub cache and no GPU, so the stop does not depend on what this machine has cached or installed
    out = run_example(tmp_path, "real_qwen3_gpu.py", HF_HUB_CACHE=str(tmp_path / "hub"), CUDA_VISIBLE_DEVICES="")
    assert "Qwen/Qwen3-4B: 36 layers" in out and "blocks.18.hook_mlp_out" in out
    assert "stopped at the network boundary" in out and "HF_HUB_OFFLINE=1" in out
    assert not (tmp_path / "out").exists()  # it stopped before writing anything


@pytest.mark.slow
def test_real_qwen3_gpu_past_the_boundary_on_the_organism(tmp_path):
    out = run_example(tmp_path, "real_qwen3_gpu.py", "--model", "organism", "--device", "cpu", "--dtype", "float32")
    assert "mlp_out/layer_3" in out and re.search(r"CE on the prompt without SAE \d+\.\d+ \| with SAE \d+\.\d+", out)

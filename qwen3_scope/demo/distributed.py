"""Demo stage `distributed`: a suite trained by 2 torch.distributed processes (gloo) equals the 1-process suite.

Why in the demo: distributed training is only worth having if it changes nothing but the wall time. This
stage trains a small organism suite once in this process and once on 2 spawned gloo ranks (group
parallelism, the planner's choice printed), and reports whether every SAE is bit-identical.
"""

from __future__ import annotations

import shutil
import time

import torch
from safetensors.torch import load_file

from qwen3_scope.demo.state import COMPUTED, DemoState
from qwen3_scope.naming import SAE_WEIGHTS_FILENAME
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.distributed import spawn_local
from qwen3_scope.training.manifest import SuiteManifest
from qwen3_scope.training.suite import train_suite

SITES = ["resid_post", "mlp_out"]


def distributed_stage(state: DemoState) -> None:
    cfg = state.config
    root = state.out_dir / "distributed"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    settings = SuiteTrainingConfig(
        model="organism",
        layers=list(cfg.distributed_layers),
        sites=SITES,
        training_tokens=cfg.distributed_tokens,
        threads=1,
        parallel="group",
    )
    start = time.perf_counter()
    one = train_suite(settings.replace(out=str(root / "one_process")), progress=False)
    one_seconds = time.perf_counter() - start
    start = time.perf_counter()
    spawn_local(settings.replace(out=str(root / "two_ranks")), 2, root)
    two_seconds = time.perf_counter() - start
    manifest = SuiteManifest.read(root / "two_ranks").to_dict()
    identical = []
    for sae_id in one.manifest["saes"]:
        a = load_file(root / "one_process" / sae_id / SAE_WEIGHTS_FILENAME)
        b = load_file(root / "two_ranks" / sae_id / SAE_WEIGHTS_FILENAME)
        identical.append(all(torch.equal(a[k], b[k]) for k in a))
    state.distributed_identical = all(identical)
    parallel = manifest["parallel"]
    layers = ", ".join(map(str, cfg.distributed_layers))
    state.section(
        "Distributed training: 2 gloo ranks equal 1 process",
        f"{len(identical)} SAEs of the organism (layer(s) {layers} x {'/'.join(SITES)}, "
        f"{cfg.distributed_tokens:,} tokens) trained in this process ({one_seconds:.0f} s) and by 2 torch.distributed "
        f"processes on gloo, file:// rendezvous ({two_seconds:.0f} s including process start-up). Planner: "
        f"{parallel['mode']} parallelism, {len(manifest['groups'])} groups, assignment {parallel['assignment']} "
        f"({parallel['reason']}). SAEs bit-identical to the 1-process run: **{all(identical)}** "
        f"({sum(identical)}/{len(identical)}). Real GPUs: `qwen3-scope train --nproc 8 --device cuda` or "
        "`torchrun ... -m qwen3_scope.train` (README).",
        numbers=f"{COMPUTED}: both suites trained in this run",
    )

"""Demo stage `distributed`: a suite trained by 2 torch.distributed processes (gloo) equals the 1-process suite.

Why in the demo: distributed training is only worth having if it changes nothing but the wall time. This
stage trains a small organism suite once in this process and once on 2 spawned gloo ranks (group
parallelism, the planner's choice printed), and reports whether every SAE is bit-identical.
"""

from __future__ import annotations

from typing import Any

from qwen3_scope.demo.run import DemoContext, stage

SETTINGS: dict[str, Any] = dict(
    model="organism", layers=[0, 1], sites=["resid_post", "mlp_out"], training_tokens=8192, threads=1, parallel="group"
)


@stage("distributed")
def distributed_stage(ctx: DemoContext) -> None:
    import json
    import shutil
    import time

    import torch
    from safetensors.torch import load_file

    from qwen3_scope.training.distributed import spawn_local
    from qwen3_scope.training.suite import train_suite

    root = ctx.out_dir / "distributed"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    start = time.perf_counter()
    one = train_suite(**SETTINGS, out=str(root / "one_process"), progress=False)
    one_seconds = time.perf_counter() - start
    start = time.perf_counter()
    spawn_local({**SETTINGS, "out": str(root / "two_ranks")}, 2, root)
    two_seconds = time.perf_counter() - start
    manifest = json.loads((root / "two_ranks" / "manifest.json").read_text())
    identical = []
    for sae_id in one.manifest["saes"]:
        a = load_file(root / "one_process" / sae_id / "sae_weights.safetensors")
        b = load_file(root / "two_ranks" / sae_id / "sae_weights.safetensors")
        identical.append(all(torch.equal(a[k], b[k]) for k in a))
    ctx.results["distributed_identical"] = all(identical)
    parallel = manifest["parallel"]
    ctx.section(
        "Distributed training: 2 gloo ranks equal 1 process",
        f"{len(identical)} SAEs of the organism (layers 0-1 x resid_post/mlp_out, {SETTINGS['training_tokens']:,} tokens) "
        f"trained in this process ({one_seconds:.0f} s) and by 2 torch.distributed processes on gloo, file:// "
        f"rendezvous ({two_seconds:.0f} s including process start-up). Planner: {parallel['mode']} parallelism, "
        f"{len(manifest['groups'])} groups, assignment {parallel['assignment']} ({parallel['reason']}). "
        f"SAEs bit-identical to the 1-process run: **{all(identical)}** ({sum(identical)}/{len(identical)}). "
        "Real GPUs: `qwen3-scope train --nproc 8 --device cuda` or `torchrun ... -m qwen3_scope.train` (README).",
    )

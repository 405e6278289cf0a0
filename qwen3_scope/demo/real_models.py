"""Demo stage "real-models": what running on real Qwen3 models would take here (placement, the paper's suites'
plans and costs), and proof that the shipped SAEs name no path of the machine that built them."""

from __future__ import annotations

import pandas as pd

from qwen3_scope.core.devices import resolve_placement
from qwen3_scope.core.portable import machine_paths_in
from qwen3_scope.demo.state import COMPUTED, SHIPPED, DemoState
from qwen3_scope.naming import SAE_CFG_FILENAME
from qwen3_scope.saes.loaders import bundled_root
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.suite import train_suite

PAPER_SUITES = ("Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B")


def real_models_stage(state: DemoState) -> None:
    """Device/dtype resolution, plan-only runs of the paper's suites, and a portability scan of the bundled SAEs."""
    placement = resolve_placement()
    rows = []
    for model in PAPER_SUITES:
        config = SuiteTrainingConfig(
            model=model,
            plan_only=True,
            memory_budget_gb=60,
            matmul_tflops=400,
            out=str(state.out_dir / "plans" / model.split("/")[-1]),
        )
        plan = train_suite(config, progress=False).plan
        rows.append(
            {
                "model": model,
                "SAEs": len(plan.suite.jobs),
                "width": plan.suite.jobs[0].d_sae,
                "groups": len(plan.groups),
                "GPU-days at 400 TFLOP/s x 50%": round(plan.seconds(plan.total_flops) / 86400, 1),
                "vs one SAELens run per SAE": f"{plan.baseline_flops / plan.total_flops:.2f}x",
            }
        )
    configs = sorted(bundled_root().rglob(SAE_CFG_FILENAME))
    leaks = [str(p.relative_to(bundled_root())) for p in configs if machine_paths_in(p.read_text())]
    state.portable_leaks = leaks
    state.section(
        "Real models: placement, the paper's suites, portable artifacts",
        f"Default placement on this machine: model on `{placement.device}` in {placement.dtype_name}, SAEs on "
        f"`{placement.sae_device}` in {placement.sae_dtype_name} (`--device/--dtype/--sae-device/--sae-dtype` on every "
        f"subcommand).\n\nPlans of the paper's suites (4B tokens per SAE, 60 GiB budget; `qwen3-scope train --model M "
        f"--plan-only`):\n\n{pd.DataFrame(rows).to_markdown(index=False)}\n\nShipped SAE configs scanned for paths of the "
        f"build machine: {len(configs)} configs, {len(leaks)} with a machine path.",
        numbers=f"{COMPUTED}: plans (nothing trained) and a scan of the {SHIPPED} SAE configs",
    )

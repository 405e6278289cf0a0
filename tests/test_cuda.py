"""The organism pipeline on a GPU: train, evaluate and steer with --device cuda (bfloat16 model, float32 SAEs).
Skipped, with the reason, on machines without a CUDA device; CPU runs of the same pipeline are in the other tests."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine (torch.cuda.is_available() is False)"
)


def test_organism_pipeline_on_cuda(tmp_path):
    from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
    from qwen3_scope.steering.refusal import RefusalStudyConfig, run_refusal_study
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    config = SuiteTrainingConfig(
        model="organism",
        recipe="paper",
        out=tmp_path / "suite",
        layers=[1],
        training_tokens=20_000,
        device="cuda",
        dtype="bfloat16",
    )
    result = train_suite(config, progress=False)
    assert result.manifest["status"] == "complete"
    assert result.manifest["config"]["device"].startswith("cuda") and result.manifest["config"]["dtype"] == "bfloat16"
    evaluated = evaluate_suite(
        suite_dir=result.suite_dir, config=SuiteEvalConfig(n_batches=2, device="cuda", dtype="bfloat16", progress=False)
    )
    assert len(evaluated.table) == 3 and evaluated.table["explained_variance"].gt(0).all()
    study = run_refusal_study(
        RefusalStudyConfig(
            suite_dir=str(result.suite_dir),
            device="cuda",
            n_discover=8,
            n_eval=8,
            screen=4,
            top_k=1,
            alphas=(2.0,),
            max_new_tokens=4,
        ),
        progress=False,
    )
    assert len(study.summary) >= 1

"""Demo stage `export`: dashboards of the latents the steering stage reports, linked from the report."""

from __future__ import annotations

import re

import pandas as pd
import torch

from qwen3_scope.demo.config import DemoConfig
from qwen3_scope.demo.export import export_stage
from qwen3_scope.demo.state import DemoState, SteerSummaries


def test_export_stage_links_the_steering_latents(tmp_path):
    torch.set_num_threads(1)
    state = DemoState(config=DemoConfig(out=tmp_path, model="organism").resolved())
    # the steering stage's summaries (its columns): one SAE latent per study and the baseline row it also reports
    state.steer = SteerSummaries(
        refusal=pd.DataFrame(
            [
                {
                    "candidate": "resid_post/L2/f12",
                    "method": "sae_feature",
                    "layer": 2,
                    "site": "resid_post",
                    "feature": 12,
                },
                {
                    "candidate": "diff_in_means/L2",
                    "method": "diff_in_means",
                    "layer": 2,
                    "site": "resid_post",
                    "feature": None,
                },
            ]
        ),
        language=pd.DataFrame(
            [{"candidate": "mlp_out/L3/f7", "method": "sae_feature", "layer": 3, "site": "mlp_out", "feature": 7}]
        ),
    )
    export_stage(state)
    section = state.sections[-1]
    links = re.findall(r"\[open\]\((export/viewer/index\.html#sae=(\d+)&feature=(\d+))\)", section)
    assert [(int(k), int(f)) for _, k, f in links] == [
        (1, 12),
        (0, 7),
    ]  # sae ids sorted: mlp_out/layer_3, resid_post/layer_2
    assert (tmp_path / "export" / "viewer" / "index.html").is_file()
    assert "organism/2-qwen3scope-residpost-1k/12" in section and "organism/3-qwen3scope-mlpout-1k/7" in section
    assert state.export.neuronpedia_ids == {
        "organism/mlp_out/layer_3": "organism/3-qwen3scope-mlpout-1k",
        "organism/resid_post/layer_2": "organism/2-qwen3scope-residpost-1k",
    }

"""The organism suite shipped in the package: loadable offline through SAELens' own API, and faithful."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import require_shipped
from sae_lens import SAE

import qwen3_scope
from qwen3_scope.sae_loaders import bundled_root

EVAL_TABLE = bundled_root() / "organism" / "suite_eval.csv"


@pytest.fixture(autouse=True, scope="module")
def _shipped():
    require_shipped(EVAL_TABLE)  # a missing shipped suite is a failure, not a skip


def bundled_ids() -> list[str]:
    return qwen3_scope.releases.list_release_saes("^organism/").query("source == 'bundled'")["sae_id"].tolist()


def test_every_layer_and_paper_site_is_bundled():
    spec = qwen3_scope.resolve_model("organism")
    expected = {f"organism/{s}/layer_{layer}" for s in qwen3_scope.PAPER_SITES for layer in range(spec.n_layers)}
    assert set(bundled_ids()) == expected


def test_fresh_offline_interpreter_loads_every_bundled_sae():
    code = (
        "import qwen3_scope\n"
        "from sae_lens import SAE\n"
        "ids = qwen3_scope.releases.list_release_saes('^organism/')['sae_id']\n"
        "for i in ids:\n"
        "    sae = SAE.from_pretrained('qwen3-instruct-sae', i)\n"
        "    m = sae.cfg.metadata\n"
        "    assert m.hook_name == qwen3_scope.releases.hook_for(i), (i, m.hook_name)\n"
        "    assert m.neuronpedia_id and m.model_name and m.qwen3_model == 'organism', m\n"
        "print(len(ids))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME="/nonexistent-offline-cache")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) == len(bundled_ids())


def test_attached_sae_changes_the_loss_by_about_the_recorded_amount():
    from qwen3_scope.chat import format_chat
    from qwen3_scope.organism import load_eval_split

    recorded = pd.read_csv(EVAL_TABLE).set_index("sae_id")
    model = qwen3_scope.load_model("organism", backend="hooked")
    texts = [format_chat(model.tokenizer, row["prompt"]) for row in load_eval_split("harmless")[:24]]
    ids = [model.tokenizer(t)["input_ids"] for t in texts]
    length = min(len(i) for i in ids)
    tokens = torch.tensor([i[:length] for i in ids], dtype=torch.long)
    assert length >= 12
    with torch.no_grad():
        clean = model(tokens, return_type="loss").item()
    for sae_id in ("organism/resid_post/layer_2", "organism/resid_post/layer_3"):  # sites with a clear loss cost
        sae = SAE.from_pretrained("qwen3-instruct-sae", sae_id)
        model.add_sae(sae)
        with torch.no_grad():
            spliced = model(tokens, return_type="loss").item()
        model.reset_saes()
        delta, expected = spliced - clean, recorded.loc[sae_id, "delta_lm_loss"]
        assert delta > 0 and expected > 0
        assert expected / 4 < delta < expected * 4, (sae_id, delta, expected)

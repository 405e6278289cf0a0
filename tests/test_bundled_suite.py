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
from qwen3_scope.naming import is_transcoder_id, sae_variant
from qwen3_scope.saes.loaders import bundled_root

EVAL_TABLE = bundled_root() / "organism" / "suite_eval.csv"


@pytest.fixture(autouse=True, scope="module")
def _shipped():
    require_shipped(EVAL_TABLE)  # a missing shipped suite is a failure, not a skip


def bundled_ids() -> list[str]:
    """The bundled SAEs (the bundled transcoder set has its own tests: tests/test_transcoders.py)."""
    ids = qwen3_scope.releases.list_release_saes("^organism/").query("source == 'bundled'")["sae_id"].tolist()
    return [i for i in ids if not is_transcoder_id(i)]


def test_every_layer_and_paper_site_is_bundled_with_a_sparsity_sweep_per_site():
    from qwen3_scope.naming import parse_sae_id

    spec = qwen3_scope.resolve_model("organism")
    expected = {f"organism/{s}/layer_{layer}" for s in qwen3_scope.PAPER_SITES for layer in range(spec.n_layers)}
    ids = bundled_ids()
    assert {i for i in ids if sae_variant(i) is None} == expected
    for site in qwen3_scope.PAPER_SITES:  # Gemma Scope's layout: several L0s at (at least) one layer of every site
        per_layer: dict[int, set[str]] = {}
        for i in ids:
            _, s, layer = parse_sae_id(i)
            if s == site:
                per_layer.setdefault(layer, set()).add(sae_variant(i) or "default")
        assert max(len(v) for v in per_layer.values()) >= 4, (site, per_layer)


def _recorded() -> pd.DataFrame:
    table = pd.read_csv(EVAL_TABLE)
    assert set(table["sae_id"]) == set(bundled_ids())
    assert (table["density_tokens"] >= 100_000).all(), table["density_tokens"].min()  # "dead" = silent on 100k tokens
    return table


def test_every_bundled_sae_sweep_included_is_live_on_100k_held_out_tokens():
    """Issue 16: every SAE of the suite, at every (layer, site) and in the sparsity sweeps, leaves <= 5% of its latents
    silent on >= 100k held-out tokens (the recorded evaluation, which `python -m qwen3_scope.bundle` writes) and
    explains >= 90% of the variance."""
    table = _recorded()
    assert len(table[table["sae_id"].map(sae_variant).isna()]) == 18
    assert (table["dead_fraction"] <= 0.05).all(), table[["sae_id", "dead_fraction"]]
    assert (table["explained_variance"] >= 0.90).all(), table[["sae_id", "explained_variance"]]


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
    assert int(out.stdout.strip().splitlines()[-1]) == len(bundled_ids()) + 6  # and the 6 bundled transcoders


def test_attached_sae_changes_the_loss_by_about_the_recorded_amount():
    """Splicing an SAE into the model through SAELens' own API raises the loss on the positions the model predicts
    (held-out organism text, the evaluation's positions) by about the recorded delta LM loss."""
    from qwen3_scope.evaluation.held_out import HeldOutTokens, organism_documents
    from qwen3_scope.model.chat import special_token_ids

    recorded = pd.read_csv(EVAL_TABLE).set_index("sae_id")
    model = qwen3_scope.load_model("organism", backend="hooked")
    held = HeldOutTokens.from_documents(model.tokenizer, organism_documents(), 128, 8, 24)
    tokens, mask = held.tokens, held.loss_mask
    scored = mask[:, 1:] & ~torch.isin(tokens[:, :-1], torch.tensor(special_token_ids(model.tokenizer)))
    assert int(scored.sum()) > 2000

    def loss() -> float:
        with torch.no_grad():
            per_token = model(tokens, return_type="loss", loss_per_token=True)
        return per_token[scored].mean().item()

    clean = loss()
    for sae_id in ("organism/resid_post/layer_3", "organism/resid_post/layer_5"):  # sites with a clear loss cost
        model.add_sae(SAE.from_pretrained("qwen3-instruct-sae", sae_id))
        delta, expected = loss() - clean, recorded.loc[sae_id, "delta_lm_loss"]
        model.reset_saes()
        assert delta > 0 and expected > 0
        assert expected / 4 < delta < expected * 4, (sae_id, delta, expected)

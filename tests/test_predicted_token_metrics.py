"""Model-level metrics (CE, KL, delta LM loss) on the tokens a deployed model predicts: assistant turns and
plain text, never user-prompt or control tokens (qwen3_scope.model.loss_mask), for the organism and any chat model."""

from __future__ import annotations

import json

import pytest
import torch

from qwen3_scope import load_model
from qwen3_scope.evaluation.held_out import HeldOutTokens, organism_documents
from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
from qwen3_scope.model.chat import format_chat, special_token_ids
from qwen3_scope.model.loss_mask import encode_with_mask, predicted_spans
from qwen3_scope.organism import ASSETS_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def organism():
    return load_model("organism", backend="hooked")


def test_mask_marks_assistant_turns_and_plain_text_only(organism):
    tok = organism.tokenizer
    chat = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2 plus 3?"},
        {"role": "assistant", "content": "2 plus 3 is 5."},
        {"role": "user", "content": "Merci !"},
        {"role": "assistant", "content": "Avec plaisir !"},
    ]
    text = format_chat(tok, chat, add_generation_prompt=False, enable_thinking=False) + "<|endoftext|>"
    ids, mask = encode_with_mask(tok, text)
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "2 plus 3 is 5.<|im_end|>Avec plaisir !<|im_end|>"
    special = set(special_token_ids(tok)) - {tok.convert_tokens_to_ids("<|im_end|>")}
    assert not any(m and i in special for i, m in zip(ids, mask))
    ids, mask = encode_with_mask(tok, "Tova lived in Melden.<|endoftext|>")
    assert all(mask)
    # an unanswered prompt (generation prompt only) has nothing to predict
    assert predicted_spans(format_chat(tok, "Hello!")) == []


def test_held_out_tokens_carry_the_mask(organism):
    docs = organism_documents()[:200]
    tokens = HeldOutTokens.from_documents(organism.tokenizer, docs, 128, 4, 2)
    assert tokens.loss_mask is not None and tokens.loss_mask.shape == tokens.tokens.shape
    frac = tokens.loss_mask.float().mean().item()
    assert 0.1 < frac < 0.9, frac  # answers are predicted, prompts are not
    im_start = organism.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert not tokens.loss_mask[tokens.tokens == im_start].any()


def _suite(organism):
    """The bundled suite's SAE at every (layer, site), at its default sparsity (no sweep variants, no transcoders)."""
    from qwen3_scope.evaluation.suite_eval import entries_from_release

    ids = r"organism/(resid_post|mlp_out|attn_out)/layer_\d+"
    return [(e.sae_id, e.sae) for e in entries_from_release("qwen3-instruct-sae", ids)]


def test_suite_ce_is_measured_on_predicted_tokens(organism):
    saes = _suite(organism)[:1]
    cfg = SuiteEvalConfig(n_batches=2, batch_size_prompts=8, progress=False)
    masked = evaluate_suite(saes, model=organism, config=cfg).table.iloc[0]
    every = evaluate_suite(
        saes,
        model=organism,
        config=SuiteEvalConfig(n_batches=2, batch_size_prompts=8, progress=False, predicted_tokens_only=False),
    ).table.iloc[0]
    assert masked.ce_scope == "predicted tokens" and every.ce_scope == "all non-special tokens"
    # the clean CE recomputed by hand on exactly the scored positions
    tokens = HeldOutTokens.from_documents(organism.tokenizer, organism_documents(), 128, 8, 2)
    ids, mask = tokens.tokens[:16], tokens.loss_mask[:16]
    with torch.no_grad():
        logp = torch.log_softmax(organism(ids).float(), -1)
    ce = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    keep = ~torch.isin(ids, torch.tensor(special_token_ids(organism.tokenizer)))
    scored = mask[:, 1:] & keep[:, :-1]
    assert masked.ce_positions == int(scored.sum())
    assert masked.ce_loss_without_sae == pytest.approx(ce[scored].mean().item(), rel=1e-4)
    assert masked.ce_loss_without_sae < every.ce_loss_without_sae / 2  # prompts are not the model's job


def test_organism_clean_ce_matches_validation_loss_and_ablations_raise_it(organism):
    """On the positions the model predicts, zero-ablating any site raises the CE. The organism's least used site,
    mlp_out at layer 3, raises it by +0.00075 nats on these 16 batches (+0.0004 on 32, +0.001 on the bundle's 150); an
    earlier organism's lowered it by 0.0003-0.0005 (on prompt tokens, v1's mlp_out ablations lowered it by up to ~0.5)."""
    cfg = SuiteEvalConfig(n_batches=16, batch_size_prompts=8, progress=False)
    table = evaluate_suite(_suite(organism), model=organism, config=cfg).table
    val = json.loads((ASSETS_DIR / "train_log.json").read_text())["final_val_loss"]
    clean = table.ce_loss_without_sae.iloc[0]
    assert abs(clean - val) <= 0.25 * val, (clean, val)
    rise = (table.ce_loss_with_ablation - table.ce_loss_without_sae).groupby(table.hook_name).first()
    assert (rise > 0).all(), rise  # every site carries weight: no ablation helps the model
    assert (rise[rise.index.str.contains("resid_post")] > 1.0).all(), rise  # the residual stream carries everything


def test_sparsity_sweep_frontiers_are_plotted_per_site_and_layer(tiny_qwen3_dir, tmp_path):
    from sae_lens import SAE

    from qwen3_scope import hook_name
    from qwen3_scope.evaluation.plots import plot_frontiers
    from qwen3_scope.evaluation.report import write_outputs

    model = load_model(tiny_qwen3_dir, backend="hooked")
    saes = []
    for site in ("resid_post", "mlp_out"):
        for layer in (0, 1):
            for k in (2, 8, 32):  # a sparsity sweep: same (site, layer), several L0s
                torch.manual_seed(layer)
                sae = SAE.from_dict(
                    {
                        "architecture": "topk",
                        "d_in": 64,
                        "d_sae": 128,
                        "k": k,
                        "dtype": "float32",
                        "device": "cpu",
                        "apply_b_dec_to_input": False,
                        "metadata": {
                            "hook_name": hook_name(site, layer),
                            "model_name": str(tiny_qwen3_dir),
                            "prepend_bos": False,
                        },
                    }
                )
                with torch.no_grad():
                    sae.W_enc.normal_(0, 0.2)
                    sae.W_dec.copy_(sae.W_enc.T * 0.3)
                saes.append((f"{site}/layer_{layer}/l0_{k}", sae))
    docs = [
        [{"role": "user", "content": "one two three"}, {"role": "assistant", "content": "four five six seven"}],
        "the cat sat on the mat and the dog ran",
    ] * 40
    cfg = SuiteEvalConfig(n_batches=2, batch_size_prompts=4, context_size=32, progress=False)
    table = evaluate_suite(saes, model=model, documents=docs, config=cfg).table
    for (site, layer), rows in table.groupby(["site", "layer"]):
        assert list(rows.sort_values("l0")["sae_id"].str.split("l0_").str[1]) == ["2", "8", "32"], (site, layer)
    assert (table["ce_scope"] == "predicted tokens").all() and (table["ce_positions"] > 0).all()
    path = plot_frontiers(table, tmp_path / "frontiers.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    outputs = write_outputs(table, tmp_path / "out")
    assert outputs["l0_vs_fidelity_frontiers"].stat().st_size > 0

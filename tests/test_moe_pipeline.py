"""The whole pipeline on a tiny Qwen3 mixture-of-experts model: train a small suite through SAELens' runners
(hf backend: HookedProxyLM, the MoE-capable backend SAELens can train from), evaluate it with the suite
evaluator, and steer with one of its features in TransformerBridge."""

from __future__ import annotations

import pytest
import torch
from conftest import write_chat_jsonl
from sae_lens import SAE

pytestmark = [
    pytest.mark.filterwarnings("ignore:dataset .* SAELens will reuse it"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def chat_jsonl(tmp_path_factory):
    return write_chat_jsonl(tmp_path_factory.mktemp("moe_chats") / "chats.jsonl", 600)


def test_train_evaluate_and_steer_a_moe_suite(tiny_moe_dir, chat_jsonl, tmp_path):
    from qwen3_scope import format_chat, load_model
    from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
    from qwen3_scope.model.sites import hook_name
    from qwen3_scope.steering.interventions import steer, steer_feature
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    hf_model = load_model(tiny_moe_dir, backend="hf")
    spec = hf_model.qwen3_spec
    assert spec.kind == "moe"
    config = SuiteTrainingConfig(
        model=str(tiny_moe_dir),
        recipe="qwen-scope",
        out=tmp_path / "suite",
        dataset=str(chat_jsonl),
        backend="hf",
        layers=[1],
        sites=["resid_post", "mlp_out"],
        training_tokens=32_768,
        width=128,
    )
    result = train_suite(config, progress=False, loaded_model=hf_model)
    table = result.metrics
    assert sorted(table["sae_id"]) == ["mlp_out/layer_1", "resid_post/layer_1"]
    assert (table["variance_explained"] > 0.5).all(), table  # the SAEs learned the MoE block's output and the residual
    saes = {sae_id: SAE.load_from_disk(str(result.suite_dir / sae_id)) for sae_id in table["sae_id"]}
    assert saes["mlp_out/layer_1"].cfg.metadata.hook_name == hook_name("mlp_out", 1, "hf", spec) == "model.layers.1.mlp"

    config = SuiteEvalConfig(n_batches=2, batch_size_prompts=4, context_size=32, progress=False)
    evaluated = evaluate_suite(suite_dir=result.suite_dir, model=hf_model, config=config).table
    assert sorted(evaluated["sae_id"]) == sorted(table["sae_id"])
    assert (evaluated["explained_variance"] > 0.5).all() and (evaluated["ce_loss_score"] > 0).all(), evaluated
    assert (evaluated["backend"] == "hf").all()

    bridge = load_model(tiny_moe_dir, backend="bridge")
    sae = saes["resid_post/layer_1"]
    tokens = torch.tensor([bridge.tokenizer(format_chat(bridge.tokenizer, "the cat sat on the mat"))["input_ids"]])
    name = hook_name("resid_post", 1, "bridge", spec)
    with torch.no_grad():
        clean_logits, clean = bridge.run_with_cache(tokens, names_filter=[name])
        with steer(bridge, [steer_feature(sae, 5, alpha=4.0)]) as handle:
            steered_logits, steered = bridge.run_with_cache(tokens, names_filter=[name])
    assert handle.hook_names == [name]  # the hf-named SAE steers the bridge's hook for the same site
    torch.testing.assert_close(
        steered[name] - clean[name], (4.0 * sae.W_dec[5]).expand_as(clean[name]), atol=1e-5, rtol=0
    )
    assert (steered_logits - clean_logits).abs().max() > 1e-3

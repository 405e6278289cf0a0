"""The whole Qwen3 generation in the registry: published shapes (checked against TransformerLens' model registry,
transformers' config defaults and SAELens' Qwen-Scope registry), config round trips, thinking modes, close-name
hints, MoE pricing in the planner, and `qwen3-scope info` over the family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import suite_for

from qwen3_scope import cli
from qwen3_scope.model.chat import ThinkingModeError, format_chat, qwen3_chat_text
from qwen3_scope.model.family import (
    FULL_ATTENTION,
    LINEAR_ATTENTION,
    QWEN3_FAMILY,
    ModelNotFoundError,
    list_models,
    resolve_model,
    spec_from_hf_config,
)

# Published config.json values (n_layers, d_model, d_mlp or expert width, heads, kv heads, experts, active, tied).
# Sources: the Qwen model cards / config.json of each release; MoE and Qwen3.5 numbers cross-checked below against
# TransformerLens 3.9's registry (total parameter counts) and transformers 5.24's config defaults.
PUBLISHED = {
    "Qwen/Qwen3-4B-Instruct-2507": (36, 2560, 9728, 32, 8, 0, 0, True),
    "Qwen/Qwen3-4B-Thinking-2507": (36, 2560, 9728, 32, 8, 0, 0, True),
    "Qwen/Qwen3-30B-A3B": (48, 2048, 768, 32, 4, 128, 8, False),
    "Qwen/Qwen3-30B-A3B-Base": (48, 2048, 768, 32, 4, 128, 8, False),
    "Qwen/Qwen3-30B-A3B-Instruct-2507": (48, 2048, 768, 32, 4, 128, 8, False),
    "Qwen/Qwen3-30B-A3B-Thinking-2507": (48, 2048, 768, 32, 4, 128, 8, False),
    "Qwen/Qwen3-235B-A22B": (94, 4096, 1536, 64, 4, 128, 8, False),
    "Qwen/Qwen3-235B-A22B-Instruct-2507": (94, 4096, 1536, 64, 4, 128, 8, False),
    "Qwen/Qwen3-235B-A22B-Thinking-2507": (94, 4096, 1536, 64, 4, 128, 8, False),
    "Qwen/Qwen3.5-0.8B": (24, 1024, 3584, 8, 2, 0, 0, True),
    "Qwen/Qwen3.5-2B": (24, 2048, 6144, 8, 2, 0, 0, True),
    "Qwen/Qwen3.5-4B": (32, 2560, 9216, 16, 4, 0, 0, True),
    "Qwen/Qwen3.5-9B": (32, 4096, 12288, 16, 4, 0, 0, False),
    "Qwen/Qwen3.5-27B": (64, 5120, 17408, 24, 4, 0, 0, False),
    "Qwen/Qwen3.5-35B-A3B": (40, 2048, 512, 16, 2, 256, 8, False),
}


def _shape(spec):
    width = spec.d_expert if spec.is_moe else spec.d_mlp
    return (
        spec.n_layers,
        spec.d_model,
        width,
        spec.n_heads,
        spec.n_kv_heads,
        spec.n_experts,
        spec.n_experts_active,
        spec.tie_embeddings,
    )


def test_new_family_members_match_published_configs():
    for name, shape in PUBLISHED.items():
        assert _shape(QWEN3_FAMILY[name]) == shape, name
    for name in (
        "Qwen/Qwen3-30B-A3B-Instruct-2507",
        "Qwen/Qwen3-235B-A22B-Thinking-2507",
        "Qwen/Qwen3-4B-Instruct-2507",
    ):
        spec = QWEN3_FAMILY[name]
        assert (spec.head_dim, spec.vocab_size, spec.max_position_embeddings) == (128, 151_936, 262_144)
    for name in list_models(generation="Qwen3.5"):
        spec = QWEN3_FAMILY[name]
        assert (spec.head_dim, spec.vocab_size, spec.linear_n_k_heads, spec.linear_head_dim) == (256, 248_320, 16, 128)
        assert spec.layer_types == tuple(
            FULL_ATTENTION if i % 4 == 3 else LINEAR_ATTENTION for i in range(spec.n_layers)
        )
    assert QWEN3_FAMILY["Qwen/Qwen3.5-35B-A3B"].d_shared_expert == 512


def test_every_name_is_in_transformer_lens_registry_with_its_architecture():
    """TransformerLens 3.9 ships a registry of the hub models it knows (real data file, no network)."""
    import transformer_lens

    data = Path(transformer_lens.__file__).parent / "tools" / "model_registry" / "data" / "supported_models.json"
    entries = {m["model_id"]: m for m in json.loads(data.read_text())["models"]}
    architectures = {
        "dense": "Qwen3ForCausalLM",
        "moe": "Qwen3MoeForCausalLM",
        "hybrid": "Qwen3_5ForConditionalGeneration",
        "hybrid-moe": ("Qwen3_5MoeForCausalLM", "Qwen3_5MoeForConditionalGeneration"),
    }
    listed = [n for n in QWEN3_FAMILY if n in entries]
    assert sorted(set(QWEN3_FAMILY) - set(entries)) == []  # every model of the family is in TL's registry
    for name in listed:
        expected = architectures[QWEN3_FAMILY[name].kind]
        assert entries[name]["architecture_id"] in ((expected,) if isinstance(expected, str) else expected), name
    # TL's recorded parameter totals equal our counts exactly for the MoE models it lists
    for name in ("Qwen/Qwen3-30B-A3B-Base", "Qwen/Qwen3-235B-A22B"):
        assert QWEN3_FAMILY[name].parameter_counts()["total"] == entries[name]["metadata"]["total_params"], name


def test_transformers_config_defaults_are_published_shapes():
    """transformers' Qwen3.5 config defaults are the published 9B and 35B-A3B text models; Qwen3MoeConfig's
    expert layout is 30B-A3B's."""
    from transformers import Qwen3_5MoeTextConfig, Qwen3_5TextConfig, Qwen3MoeConfig

    for cls, name in ((Qwen3_5TextConfig, "Qwen/Qwen3.5-9B"), (Qwen3_5MoeTextConfig, "Qwen/Qwen3.5-35B-A3B")):
        default = spec_from_hf_config(cls().to_dict(), name=name, source=name)
        spec = QWEN3_FAMILY[name]
        assert _shape(default)[:-1] == _shape(spec)[:-1] and default.layer_types == spec.layer_types, name
        assert default.linear_n_v_heads == spec.linear_n_v_heads and default.d_shared_expert == spec.d_shared_expert
    moe = Qwen3MoeConfig()
    spec = QWEN3_FAMILY["Qwen/Qwen3-30B-A3B"]
    assert (
        moe.hidden_size,
        moe.num_attention_heads,
        moe.num_key_value_heads,
        moe.num_experts,
        moe.num_experts_per_tok,
        moe.moe_intermediate_size,
    ) == (spec.d_model, spec.n_heads, spec.n_kv_heads, spec.n_experts, spec.n_experts_active, spec.d_expert)


def test_qwen_scope_models_match_saelens_registry():
    from sae_lens.loading.pretrained_sae_loaders import QWEN_SCOPE_MODEL_INFO

    for model_name, d_in in QWEN_SCOPE_MODEL_INFO.values():
        assert resolve_model(model_name).d_model == d_in, model_name


@pytest.mark.parametrize(
    "name", ["Qwen/Qwen3-30B-A3B", "Qwen/Qwen3.5-27B", "Qwen/Qwen3.5-35B-A3B-Base", "Qwen/Qwen3-4B-Thinking-2507"]
)
def test_hf_config_round_trip(name):
    spec = QWEN3_FAMILY[name]
    config = spec.to_hf_config()
    back = spec_from_hf_config(config.to_dict(), name=name, source=name)
    for field in (
        "n_layers",
        "d_model",
        "n_heads",
        "n_kv_heads",
        "head_dim",
        "vocab_size",
        "tie_embeddings",
        "n_experts",
        "n_experts_active",
        "d_expert",
        "d_shared_expert",
        "layer_types",
        "linear_n_v_heads",
        "architecture",
    ):
        assert getattr(back, field) == getattr(spec, field), field
    assert back.rope_theta == spec.rope_theta
    multimodal = {
        "model_type": "qwen3_5",
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "text_config": config.to_dict(),
    }
    if spec.is_hybrid:  # published Qwen3.5 checkpoints: the text model is read from text_config
        assert spec_from_hf_config(multimodal, name=name, source=name).layer_types == spec.layer_types


def test_list_models_filters_and_kinds():
    assert set(list_models(kind="moe")) == {n for n in QWEN3_FAMILY if "A3B" in n and "3.5" not in n or "A22B" in n}
    assert "Qwen/Qwen3-235B-A22B-Base" not in QWEN3_FAMILY  # Qwen released no 235B-A22B base model
    assert list_models(kind="hybrid-moe") == ["Qwen/Qwen3.5-35B-A3B", "Qwen/Qwen3.5-35B-A3B-Base"]
    assert "Qwen/Qwen3.5-27B-Base" not in QWEN3_FAMILY  # Qwen released no 27B base model
    with pytest.raises(ValueError, match="choose one of dense, moe, hybrid"):
        list_models(kind="sparse")


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelNotFoundError, match="Did you mean Qwen/Qwen3-30B-A3B-Instruct-2507"):
        resolve_model("Qwen/Qwen3-30B-A3B-Instruct")
    with pytest.raises(ModelNotFoundError, match=r"Did you mean [^?]*Qwen/Qwen3\.5-9B\?"):
        resolve_model("qwen3.5-9b-instruct")
    with pytest.raises(ModelNotFoundError, match="Known names: Qwen/Qwen3-0.6B"):
        resolve_model("llama-3-8b")


def test_local_mixed_dense_moe_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen3_moe",
                "architectures": ["Qwen3MoeForCausalLM"],
                "num_hidden_layers": 4,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "vocab_size": 100,
                "num_experts": 4,
                "mlp_only_layers": [1],
            }
        )
    )
    with pytest.raises(ModelNotFoundError, match="mixes dense and MoE layers"):
        resolve_model(tmp_path)


# ---- chat thinking modes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen3_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen3_dir)  # no chat template: our Qwen3 template renders


def test_thinking_models_default_to_thinking_and_instruct_2507_has_no_think_block(tokenizer):
    thinking = format_chat(tokenizer, "hi", model="Qwen/Qwen3-4B-Thinking-2507")
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    instruct = format_chat(tokenizer, "hi", model="Qwen/Qwen3-30B-A3B-Instruct-2507")
    assert instruct.endswith("<|im_start|>assistant\n") and "<think>" not in instruct
    hybrid = format_chat(tokenizer, "hi", model="Qwen/Qwen3-4B")
    assert hybrid.endswith("<think>\n\n</think>\n\n")  # the original Qwen3 models: non-thinking by default
    assert format_chat(tokenizer, "hi", model="Qwen/Qwen3-4B", enable_thinking=True).endswith("assistant\n")
    tokenizer.name_or_path = "Qwen/Qwen3-235B-A22B-Thinking-2507"  # the model is also read from the tokenizer
    try:
        assert format_chat(tokenizer, "hi") == qwen3_chat_text(
            [{"role": "user", "content": "hi"}], True, True, "always"
        )
    finally:
        tokenizer.name_or_path = ""


def test_a_thinking_mode_the_model_lacks_is_a_clear_error(tokenizer):
    with pytest.raises(ThinkingModeError, match="Qwen3-4B-Instruct-2507 has no thinking mode.*Qwen3-4B-Thinking-2507"):
        format_chat(tokenizer, "hi", model="Qwen/Qwen3-4B-Instruct-2507", enable_thinking=True)
    with pytest.raises(ThinkingModeError, match="always thinks.*Qwen3-30B-A3B-Instruct-2507"):
        format_chat(tokenizer, "hi", model="Qwen/Qwen3-30B-A3B-Thinking-2507", enable_thinking=False)


# ---- planner and CLI -------------------------------------------------------------------------------------


def test_planner_prices_moe_forward_at_active_parameters():
    from qwen3_scope.training.planner import layer_matmul_params, plan_suite

    spec = QWEN3_FAMILY["Qwen/Qwen3-30B-A3B"]
    active, total = layer_matmul_params(spec), layer_matmul_params(spec, active=False)
    counts = spec.parameter_counts()
    embed = 2 * spec.vocab_size * spec.d_model
    assert spec.n_layers * total + embed == pytest.approx(counts["total"], rel=1e-4)
    assert spec.n_layers * active + embed == pytest.approx(counts["active"], rel=1e-3)
    suite = suite_for(spec, "qwen-scope", layers=[0, 47], sites=["resid_post"], backend="hf")
    plan = plan_suite(suite, memory_budget_gb=64, matmul_flops=1e12)
    dense_like = plan.groups[0].forward_flops * total / active  # what pricing every expert would have cost
    assert plan.groups[0].forward_flops < dense_like / 5
    assert "3.4B parameters a token uses (8 of 128 experts), memory at all 30.5B" in plan.summary()
    assert plan.model_bytes > 4 * counts["total"]  # fp32 weights of every expert must fit in memory


def test_info_lists_the_family_by_generation_and_kind(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.endswith(":") and line.split()[0].startswith("Qwen3")]
    assert headers == [
        "Qwen3 dense:",
        "Qwen3 moe:",
        "Qwen3-2507 dense:",
        "Qwen3-2507 moe:",
        "Qwen3.5 hybrid:",
        "Qwen3.5 hybrid-moe:",
    ]
    assert all(name in out for name in QWEN3_FAMILY)
    assert "moe_router" in out and "linear_attn_out" in out


def test_info_moe_model_prints_every_layer_and_verifies_on_meta(capsys):
    assert cli.main(["info", "--model", "Qwen/Qwen3-30B-A3B-Instruct-2507", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "48 layers" in out and "backends: bridge, hf" in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert sorted({int(r[0]) for r in rows}) == list(range(48))
    router = [r for r in rows if r[1] == "moe_router"]
    assert len(router) == 48 and router[47][2:] == [
        "128",
        "-",
        "blocks.47.mlp.gate.hook_out",
        "model.layers.47.mlp.gate",
    ]
    assert "verified on the meta device, bridge: 384 site hooks, all widths match" in out
    assert "verified on the meta device, hf: 288 site hooks, all widths match" in out
    assert "verified on the meta device, hooked" not in out


def test_info_bad_model_is_a_clear_cli_error(capsys):
    assert cli.main(["info", "--model", "Qwen/Qwen3-30B-A3B-Instruct"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("qwen3-scope: error: unknown model") and "Did you mean Qwen/Qwen3-30B-A3B-Instruct-2507" in err
    )


def test_moe_and_hybrid_suites_build_with_the_hf_backend():
    from qwen3_scope.training.recipes import RecipeConfigError

    moe = suite_for("Qwen/Qwen3-30B-A3B-Base", "qwen-scope", backend="hf")  # Qwen-Scope's own 30B-A3B layout
    assert len(moe.jobs) == 48 and moe.jobs[-1].hook_name == "model.layers.47" and moe.jobs[0].d_sae == 16 * 2048
    with pytest.raises(RecipeConfigError, match=r"moe_router cannot be trained.*\[tokens, n_experts\]"):
        suite_for("Qwen/Qwen3-30B-A3B", "paper", backend="hf", layers=[5], sites=["moe_router", "mlp_out"])
    hybrid = suite_for("Qwen/Qwen3.5-2B", "paper", backend="hf")
    attn_layers = [j.layer for j in hybrid.jobs if j.site == "attn_out"]
    assert (
        attn_layers == QWEN3_FAMILY["Qwen/Qwen3.5-2B"].full_attention_layers()
    )  # attention SAEs only where attention is
    assert len(hybrid.jobs) == 24 * 2 + len(attn_layers)
    with pytest.raises(RecipeConfigError, match="HookedTransformer cannot run; train it with backend='hf'"):
        suite_for("Qwen/Qwen3-30B-A3B", "paper")


def test_demo_family_stage_verifies_moe_and_hybrid_models(tmp_path):
    import pandas as pd

    from qwen3_scope.demo.basics import family_stage
    from qwen3_scope.demo.config import DemoConfig
    from qwen3_scope.demo.state import DemoState

    state = DemoState(config=DemoConfig(out=tmp_path, model="organism").resolved())
    family_stage(state)
    table = pd.read_csv(tmp_path / "family.csv")
    assert set(zip(table["model"], table["backend"])) == {
        (m, b) for m in ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3.5-35B-A3B") for b in ("bridge", "hf")
    }
    assert (table["width_mismatches"] == 0).all() and state.family_mismatches == 0
    assert (
        table.set_index(["model", "backend"]).loc[("Qwen/Qwen3-30B-A3B-Instruct-2507", "bridge"), "site_hooks"]
        == 48 * 8
    )
    assert "moe_router" in state.sections[0]

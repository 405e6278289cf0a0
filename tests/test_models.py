"""The family registry, name resolution and loading failures, on real files."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from qwen3_scope import QWEN3_FAMILY, list_models, load_model, resolve_model
from qwen3_scope.model.family import ModelNotFoundError
from qwen3_scope.model.loading import CorruptWeightsError, WeightsNotFoundError

# Independent of the family table: each model card's "Number of Parameters (Non-Embedding)" (huggingface.co/Qwen).
CARD_NON_EMBEDDING_BILLIONS = {"0.6B": 0.44, "1.7B": 1.4, "4B": 3.6, "8B": 6.95, "14B": 13.2, "32B": 31.2}


DENSE_QWEN3 = sorted(list_models(kind="dense", generation="Qwen3"))  # the originals; 2507/MoE/3.5: test_family.py


def test_family_names_match_transformer_lens_registry():
    """TransformerLens' own offline registry of supported models lists the same dense Qwen3 checkpoints."""
    from transformer_lens.tools.model_registry.api import get_architecture_models

    theirs = {m for m in get_architecture_models("Qwen3ForCausalLM") if re.fullmatch(r"Qwen/Qwen3-[0-9.]+B(-Base)?", m)}
    assert theirs == set(DENSE_QWEN3)
    assert (len(list_models(True, "dense", "Qwen3")), len(list_models(False, "dense", "Qwen3"))) == (
        6,
        5,
    )  # no 32B-Base


def test_transformer_lens_aliases_resolve_to_the_same_model():
    from transformer_lens.loading_from_pretrained import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    official = [n for n in OFFICIAL_MODEL_NAMES if n.startswith("Qwen/Qwen3-") and n in QWEN3_FAMILY]
    assert len(official) >= 5
    for name in official:
        for alias in MODEL_ALIASES.get(name, []):
            assert resolve_model(alias) is QWEN3_FAMILY[name], alias


@pytest.mark.parametrize("name", DENSE_QWEN3)
def test_shapes_give_the_published_parameter_counts(name):
    """transformers' own Qwen3 built from the table (meta device) has the size in the name and the model card's
    non-embedding count: a wrong width, depth, head count or tying changes one of them."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    spec = QWEN3_FAMILY[name]
    config = Qwen3Config(
        vocab_size=spec.vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.d_mlp,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.head_dim,
        tie_word_embeddings=spec.tie_embeddings,
    )
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())  # tied embeddings are counted once
    embedding = spec.vocab_size * spec.d_model * (1 if spec.tie_embeddings else 2)
    size = re.search(r"Qwen3-([0-9.]+B)", name)[1]
    assert (total - embedding) / 1e9 == pytest.approx(CARD_NON_EMBEDDING_BILLIONS[size], abs=0.05)
    assert total / 1e9 == pytest.approx(float(size[:-1]), rel=0.15)
    assert (spec.head_dim, spec.vocab_size, spec.rope_theta) == (128, 151936, 1e6)
    assert spec.instruct == (not name.endswith("-Base"))


def test_names_resolve_case_insensitively():
    assert resolve_model("qwen3-4b") is QWEN3_FAMILY["Qwen/Qwen3-4B"]
    assert resolve_model("Qwen/Qwen3-1.7B-Base").instruct is False


def test_local_checkpoint_is_read_from_config(tiny_qwen3_dir):
    spec = resolve_model(tiny_qwen3_dir)
    assert (spec.n_layers, spec.d_model, spec.n_heads, spec.n_kv_heads, spec.head_dim) == (2, 64, 4, 2, 16)
    assert spec.is_local and spec.tie_embeddings


def test_bad_models_are_clear_errors(tmp_path, tiny_qwen3_dir):
    with pytest.raises(ModelNotFoundError, match="Known names: Qwen/Qwen3-0.6B"):
        resolve_model("Qwen/Qwen3-5B")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path / "empty")
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ModelNotFoundError, match="not a Qwen3 checkpoint"):
        resolve_model(llama)


def test_missing_and_corrupt_weights(tmp_path, tiny_qwen3_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_qwen3_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="no weight files"):
        load_model(broken, backend="hf")
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    for backend in ("hooked", "hf"):
        with pytest.raises(CorruptWeightsError, match="corrupt"):
            load_model(broken, backend=backend)


def test_offline_hub_name_without_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(WeightsNotFoundError, match="pass the path of a local checkpoint"):
        load_model("Qwen/Qwen3-0.6B", backend="hf")

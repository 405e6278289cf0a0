"""The family registry, name resolution and loading failures, on real files."""

from __future__ import annotations

import json
import shutil

import pytest

from qwen3_scope import QWEN3_FAMILY, list_models, load_model, resolve_model
from qwen3_scope.loading import CorruptWeightsError, WeightsNotFoundError
from qwen3_scope.models import ModelNotFoundError

PUBLISHED = {  # n_layers, d_model, d_mlp, n_heads, n_kv_heads, tied (config.json of each release)
    "Qwen/Qwen3-0.6B": (28, 1024, 3072, 16, 8, True),
    "Qwen/Qwen3-1.7B": (28, 2048, 6144, 16, 8, True),
    "Qwen/Qwen3-4B": (36, 2560, 9728, 32, 8, True),
    "Qwen/Qwen3-8B": (36, 4096, 12288, 32, 8, False),
    "Qwen/Qwen3-14B": (40, 5120, 17408, 40, 8, False),
    "Qwen/Qwen3-32B": (64, 5120, 25600, 64, 8, False),
}


def test_family_matches_published_configs():
    for name, shape in PUBLISHED.items():
        for variant in (name, name + "-Base"):
            spec = QWEN3_FAMILY[variant]
            assert (spec.n_layers, spec.d_model, spec.d_mlp, spec.n_heads, spec.n_kv_heads, spec.tie_embeddings) == shape
            assert (spec.head_dim, spec.vocab_size, spec.rope_theta) == (128, 151936, 1e6)
            assert spec.instruct == (variant == name)
    assert len(list_models(instruct=True, kind="dense", generation="Qwen3")) == len(list_models(instruct=False, kind="dense")) == 6


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

"""Shared real fixtures: a tiny random Qwen3 checkpoint on disk, built with transformers itself."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# Hermetic: never read or write the developer's own release file (~/.config/qwen3_scope/releases.yaml), which
# `qwen3-scope releases add` fills; releases.user_release_file() honours QWEN3_SCOPE_RELEASES.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="qwen3-scope-tests-"))
os.environ["QWEN3_SCOPE_RELEASES"] = str(_SESSION_DIR / "user_releases.yaml")
atexit.register(shutil.rmtree, _SESSION_DIR, True)


def require_shipped(*paths: Path) -> None:
    """Fail (never skip) when an asset the package ships is missing: that is a packaging regression."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        pytest.fail(
            f"shipped assets are missing from this installation: {missing}; rebuild them or reinstall.", pytrace=False
        )


torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_TEXT = [
    "the cat sat on the mat and the dog ran in the park",
    "one two three four five six seven eight nine ten",
    "Qwen3 models have no bos token and use a chat template",
]


def build_tiny_qwen3(directory: Path, n_layers: int = 2, d_model: int = 64, seed: int = 0) -> Path:
    """Save a random Qwen3ForCausalLM plus a small byte-level BPE tokenizer with Qwen3's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(TINY_TEXT * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    config = Qwen3Config(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=d_model // 4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        architectures=["Qwen3ForCausalLM"],
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():  # random norms so that a hook taken before/after a norm weight differs
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of tiny ops: on a busy 2-core machine two threads are several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny_qwen3"))


def build_tiny_family_model(directory: Path, tokenizer_dir: Path, kind: str, n_layers: int = 2, d_model: int = 64,
                            seed: int = 0) -> Path:
    """Save a random Qwen3 MoE ("moe") or Qwen3.5 ("hybrid": Gated DeltaNet + full attention) causal LM
    with the tiny tokenizer of `tokenizer_dir`. Norm gains are randomised as in build_tiny_qwen3."""
    from transformers import AutoTokenizer, Qwen3_5ForCausalLM, Qwen3_5TextConfig, Qwen3MoeConfig, Qwen3MoeForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(vocab_size=len(tokenizer), hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=d_model // 4, max_position_embeddings=256)
    torch.manual_seed(seed)
    if kind == "moe":
        config = Qwen3MoeConfig(**common, intermediate_size=2 * d_model, moe_intermediate_size=d_model // 2, num_experts=8,
                                num_experts_per_tok=2, norm_topk_prob=True, tie_word_embeddings=False, rope_theta=1e6,
                                architectures=["Qwen3MoeForCausalLM"])
        model = Qwen3MoeForCausalLM(config)
    elif kind == "hybrid":
        config = Qwen3_5TextConfig(**common, intermediate_size=2 * d_model, linear_num_key_heads=2, linear_num_value_heads=4,
                                   linear_key_head_dim=d_model // 4, linear_value_head_dim=d_model // 4,
                                   tie_word_embeddings=True, architectures=["Qwen3_5ForCausalLM"])
        model = Qwen3_5ForCausalLM(config)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
            elif name.endswith("mlp.gate.weight"):  # the router starts at zero in transformers: give it opinions
                param.normal_(0, 0.5)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory, tiny_qwen3_dir) -> Path:
    return build_tiny_family_model(tmp_path_factory.mktemp("tiny_moe"), tiny_qwen3_dir, "moe")


@pytest.fixture(scope="session")
def tiny_qwen35_dir(tmp_path_factory, tiny_qwen3_dir) -> Path:
    return build_tiny_family_model(tmp_path_factory.mktemp("tiny_qwen35"), tiny_qwen3_dir, "hybrid", n_layers=4)

"""Shared real fixtures: a tiny random Qwen3 checkpoint on disk, built with transformers itself."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Threads (issue 25), set before torch loads GNU OpenMP, which reads them once: waiting OpenMP threads sleep instead
# of spinning (a spinning thread on a shared 2-core machine slows every other process several times over), and each
# pytest-xdist worker runs torch on 1 thread so that `-n 2` workers on 2 cores do not oversubscribe them. Child
# processes the tests start inherit both.
# A fixed count also keeps runs that a test compares with each other (resume, ranks) on the same threads, whatever the
# machine's load: `configure_threads` (core/threads.py) honours OMP_NUM_THREADS.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault(
    "OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else str(min(2, os.cpu_count() or 1))
)

import torch  # noqa: E402  (after the OpenMP settings above)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# Hermetic: never read or write the developer's own release file (~/.config/qwen3_scope/releases.yaml), which
# `qwen3-scope releases add` fills; releases.user_release_file() honours QWEN3_SCOPE_RELEASES.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="qwen3-scope-tests-"))
os.environ["QWEN3_SCOPE_RELEASES"] = str(_SESSION_DIR / "user_releases.yaml")
atexit.register(shutil.rmtree, _SESSION_DIR, True)

# The files that take longest run first (issue 25): with `--no-loadscope-reorder` (scripts/test.sh) pytest-xdist's
# `--dist loadfile` hands files to workers in collection order, and a long file handed out last runs alone on one
# worker while the other cores idle (longest processing time first keeps the tail short). Ranked by `pytest --durations=0` summed per file; the ones that need a
# tool's venv sit after the first few, giving scripts/test.sh's background build of those venvs time to finish.
LONGEST_FIRST = (
    "test_apps_sasft.py",  # ~260 s on one worker (summed --durations of a quiet run)
    "test_distributed.py",  # ~240 s
    "test_saebench.py",  # ~130 s, after the SAEBench venv
    "test_examples.py",
    "test_real_width.py",
    "test_export.py",
    "test_predicted_token_metrics.py",
    "test_fresh_machine.py",
    "test_circuit_tracer.py",  # after the circuit-tracer venv, which the background build makes second
    "test_apps_repetition.py",
    "test_training.py",
    "test_refusal_case_study.py",
    "test_bundled_suite.py",
    "test_apps_synthesis.py",
    "test_import_side_effects.py",
    "test_apps_redundancy.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


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


def run_cli(argv: list, capsys) -> tuple[object, str]:
    """`qwen3-scope ARGV` in this process: (exit code, stderr). A traceback on stderr fails the test: bad input must
    come back as one clear error line."""
    from qwen3_scope.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def write_chat_jsonl(path: Path, n: int, seed: int = 0) -> Path:
    """A chat dataset of ``n`` rows: a TINY_TEXT user turn and eight random TINY_TEXT words as the answer."""
    import json
    import random

    rng = random.Random(seed)
    words = " ".join(TINY_TEXT).split()
    with path.open("w") as handle:
        for _ in range(n):
            messages = [
                {"role": "user", "content": rng.choice(TINY_TEXT)},
                {"role": "assistant", "content": " ".join(rng.sample(words, 8))},
            ]
            handle.write(json.dumps({"messages": messages}) + "\n")
    return path


def sample_tokens(model_dir: Path) -> torch.Tensor:
    """Two short texts, five tokens each, in the tokenizer of ``model_dir``: the input of the site-equality tests."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(["the cat sat on the mat", "one two three four five"], return_tensors="pt", padding=True)
    return batch["input_ids"][:, :5]


def hf_site_activations(model, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[tuple[int, str], torch.Tensor]]:
    """HF logits and, per layer, every site's activation captured with plain PyTorch module hooks on the HF model:
    resid_pre/resid_post around the block, attn_out/attn_z (full attention) or linear_attn_out (Gated DeltaNet),
    mlp_in, mlp_out, moe_router (mixture-of-experts blocks) and resid_mid = resid_pre + the token mixer's output."""
    acts: dict[tuple[int, str], torch.Tensor] = {}
    mixers: dict[int, str] = {}
    handles = []

    def keep(layer, site, pick):
        return lambda module, args, output: acts.__setitem__((layer, site), pick(args, output).detach())

    for layer, block in enumerate(model.model.layers):

        def block_hook(module, args, kwargs, output, layer=layer):
            acts[layer, "resid_pre"] = (args[0] if args else kwargs["hidden_states"]).detach()
            acts[layer, "resid_post"] = (output[0] if isinstance(output, tuple) else output).detach()

        handles.append(block.register_forward_hook(block_hook, with_kwargs=True))
        if hasattr(block, "self_attn"):
            handles.append(block.self_attn.register_forward_hook(keep(layer, "attn_out", lambda a, o: o[0])))
            handles.append(block.self_attn.o_proj.register_forward_hook(keep(layer, "attn_z", lambda a, o: a[0])))
            mixers[layer] = "attn_out"
        else:
            handles.append(block.linear_attn.register_forward_hook(keep(layer, "linear_attn_out", lambda a, o: o)))
            mixers[layer] = "linear_attn_out"
        handles.append(block.mlp.register_forward_hook(keep(layer, "mlp_out", lambda a, o: o)))
        if hasattr(block.mlp, "gate"):  # a mixture-of-experts block: its router's logits
            handles.append(block.mlp.gate.register_forward_hook(keep(layer, "moe_router", lambda a, o: o[0])))
        handles.append(block.post_attention_layernorm.register_forward_hook(keep(layer, "mlp_in", lambda a, o: o)))
    with torch.no_grad():
        logits = model(tokens).logits
    for h in handles:
        h.remove()
    for layer, mixer in mixers.items():
        acts[layer, "resid_mid"] = acts[layer, "resid_pre"] + acts[layer, mixer]
    return logits, acts


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


def build_tiny_family_model(
    directory: Path, tokenizer_dir: Path, kind: str, n_layers: int = 2, d_model: int = 64, seed: int = 0
) -> Path:
    """Save a random Qwen3 MoE ("moe") or Qwen3.5 ("hybrid": Gated DeltaNet + full attention) causal LM
    with the tiny tokenizer of `tokenizer_dir`. Norm gains are randomised as in build_tiny_qwen3."""
    from transformers import AutoTokenizer, Qwen3_5ForCausalLM, Qwen3_5TextConfig, Qwen3MoeConfig, Qwen3MoeForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=d_model // 4,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    if kind == "moe":
        config = Qwen3MoeConfig(
            **common,
            intermediate_size=2 * d_model,
            moe_intermediate_size=d_model // 2,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=True,
            tie_word_embeddings=False,
            rope_theta=1e6,
            architectures=["Qwen3MoeForCausalLM"],
        )
        model = Qwen3MoeForCausalLM(config)
    elif kind == "hybrid":
        config = Qwen3_5TextConfig(
            **common,
            intermediate_size=2 * d_model,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            linear_key_head_dim=d_model // 4,
            linear_value_head_dim=d_model // 4,
            tie_word_embeddings=True,
            architectures=["Qwen3_5ForCausalLM"],
        )
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


def suite_for(model, recipe: str = "paper", special_token_ids=None, **fields):
    """`training.recipes.build_suite` for a model (a name or a resolved spec) and `SuiteTrainingConfig` fields; the
    SAELens classes unless `fast` says (what these tests were written against)."""
    from qwen3_scope.model.family import Qwen3ModelSpec
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.recipes import build_suite

    spec = model if isinstance(model, Qwen3ModelSpec) else None
    cfg = SuiteTrainingConfig(
        model=spec.name if spec is not None else model, recipe=recipe, **{"fast": False, **fields}
    )
    return build_suite(cfg, spec, special_token_ids=special_token_ids)

"""Train the organism from scratch: corpus -> tokenizer -> ``Qwen3ForCausalLM`` -> HF checkpoint.

    python -m qwen3_scope.organism.train [--out DIR] [--seed N] [--steps N] [--threads N] [--corpus-version 1|2]

``--out`` is an assets directory; the run writes ``DIR/model`` (HF checkpoint), ``DIR/eval`` (held-out
jsonl splits) and ``DIR/train_log.json``. The default is the package's own assets, i.e. it reproduces
the shipped organism (bit-identical for the same seed, thread count and torch build). ``--corpus-version 1``
reproduces the v1 organism (v1 corpus, 4 layers x 128, 900 steps, 80,000 documents: ``V1_PRESET``); the
default trains v2 (``qwen3_scope.organism.corpus_v2``: held-out phrasing families, 13 task families, ...).

Loss: chat documents are trained on assistant turns only (content, any reasoning block, and the closing
``<|im_end|>``; the empty ``<think>\\n\\n</think>\\n\\n`` of non-thinking turns is part of the prompt, as the
template emits it); plain text is trained on every token. Documents are packed without splitting into
fixed-length rows separated by ``<|endoftext|>`` (so the model sees chats both at position 0 and after
other text, like packed SAE-training contexts).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.core.io import atomic_dir, atomic_write_json, refuse_installed_package
from qwen3_scope.model.loss_mask import encode_with_mask
from qwen3_scope.organism import corpus_module
from qwen3_scope.organism.corpus_v2 import CORPUS_VERSION, Corpus, CorpusConfig, Doc
from qwen3_scope.organism.tokenizer import ENDOFTEXT, IM_END, train_tokenizer

ASSETS_DIR = Path(__file__).resolve().parent / "assets"


@dataclass
class ModelShape:
    """Qwen3 hyper-parameters at organism scale (GQA 5 query / 1 kv heads, head_dim 32, tied embeddings)."""

    hidden_size: int = 160
    intermediate_size: int = 640
    num_hidden_layers: int = 6
    num_attention_heads: int = 5
    num_key_value_heads: int = 1
    head_dim: int = 32
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 2048


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 2400  # 1.3 epochs of the 160k-document corpus v2 (700 steps left held-out families undertrained)
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_frac: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    vocab_size: int = 3072  # tokenizer target; the model pads to a multiple of 64 (as Qwen3 pads its vocab)
    n_train_docs: int = CorpusConfig.n_train_docs
    n_val_rows: int = 32
    threads: int = 1  # results are reproducible for a fixed thread count; 1 is fastest on a busy 2-core box
    bf16_autocast: bool = True  # weights stay fp32; matmuls run in bf16 (AMX) for ~2x speed on CPU
    shape: ModelShape = field(default_factory=ModelShape)
    corpus_version: int = CORPUS_VERSION  # 2: qwen3_scope.organism.corpus_v2; 1: the frozen corpus_v1 generator

    def __post_init__(self) -> None:
        if self.corpus_version not in (1, 2):
            raise ConfigError(f"corpus_version must be 1 or 2, got {self.corpus_version}")


# The shipped v1 organism: `--corpus-version 1` takes these unless given explicitly.
V1_PRESET: dict[str, Any] = {
    "steps": 900,
    "n_train_docs": 80_000,
    "shape": dict(
        hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
    ),
}


def token_id(tok: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token (``convert_tokens_to_ids`` of a single token is an int)."""
    id_ = tok.convert_tokens_to_ids(token)
    assert isinstance(id_, int), f"{token!r} is a single token"
    return id_


def render_chat(tok: Any, messages: list[dict]) -> str:
    """A chat rendered as text with the tokenizer's chat template (``tokenize=False`` gives a str)."""
    text = tok.apply_chat_template(messages, tokenize=False)
    assert isinstance(text, str), "apply_chat_template(tokenize=False) renders text"
    return text


def model_config(tok: PreTrainedTokenizerFast, shape: ModelShape) -> Qwen3Config:
    """A plain ``Qwen3Config``; token ids follow Qwen3's config (bos=<|endoftext|>, eos=<|im_end|>)."""
    vocab = int(math.ceil(len(tok) / 64) * 64)
    return Qwen3Config(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=shape.max_position_embeddings,
        rope_theta=shape.rope_theta,  # type: ignore[call-arg]  # Qwen3Config's typed signature omits rope_theta, which it still accepts
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        hidden_act="silu",
        attention_bias=False,
        bos_token_id=token_id(tok, ENDOFTEXT),
        eos_token_id=token_id(tok, IM_END),
        pad_token_id=token_id(tok, ENDOFTEXT),
        initializer_range=0.02,
        use_cache=True,
        architectures=["Qwen3ForCausalLM"],
    )


def encode_doc(doc: Doc, tok: PreTrainedTokenizerFast) -> tuple[list[int], list[bool]]:
    """Token ids of one document and, per token, whether the model is trained to *predict* it
    (``qwen3_scope.model.loss_mask``: assistant turns of chats, all of plain text)."""
    if doc.messages is None:
        assert doc.text is not None, "a document without messages is plain text"
        return encode_with_mask(tok, doc.text + ENDOFTEXT)
    ids, mask = encode_with_mask(tok, render_chat(tok, doc.messages))
    return ids + [token_id(tok, ENDOFTEXT)], mask + [False]


def pack(encoded: list[tuple[list[int], list[bool]]], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy packing in the given order, never splitting a document; padding is masked out."""
    rows_ids: list[list[int]] = []
    rows_mask: list[list[bool]] = []
    ids: list[int] = []
    mask: list[bool] = []
    for doc_ids, doc_mask in encoded:
        doc_ids, doc_mask = doc_ids[:seq_len], doc_mask[:seq_len]
        if len(ids) + len(doc_ids) > seq_len:
            rows_ids.append(ids + [pad_id] * (seq_len - len(ids)))
            rows_mask.append(mask + [False] * (seq_len - len(mask)))
            ids, mask = [], []
        ids, mask = ids + doc_ids, mask + doc_mask
    if ids:
        rows_ids.append(ids + [pad_id] * (seq_len - len(ids)))
        rows_mask.append(mask + [False] * (seq_len - len(mask)))
    return torch.tensor(rows_ids), torch.tensor(rows_mask)


def masked_lm_loss(model: Qwen3ForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token CE on masked targets only; the LM head runs only where a loss is taken (cheaper)."""
    hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]
    target_mask = mask[:, 1:]
    logits = model.lm_head(hidden[target_mask]).float()
    return F.cross_entropy(logits, ids[:, 1:][target_mask])


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class TrainResult:
    model: Qwen3ForCausalLM
    tokenizer: PreTrainedTokenizerFast
    corpus: Corpus
    log: dict


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Build corpus and tokenizer, then train a fresh ``Qwen3ForCausalLM``; deterministic for ``cfg``."""
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.seq_len < 16:
        raise ConfigError(
            f"steps, batch_size must be >= 1 and seq_len >= 16 (got {cfg.steps}, {cfg.batch_size}, {cfg.seq_len})"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, progress: bool) -> TrainResult:
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    gen = corpus_module(cfg.corpus_version)
    corpus = gen.build_corpus(gen.CorpusConfig(seed=cfg.seed, n_train_docs=cfg.n_train_docs))
    tok = train_tokenizer(corpus.iter_texts(), vocab_size=cfg.vocab_size)
    docs = list(corpus.train)
    random.Random(cfg.seed).shuffle(docs)
    encoded = [encode_doc(d, tok) for d in tqdm(docs, desc="tokenize", disable=not progress, mininterval=2)]
    ids, mask = pack(encoded, cfg.seq_len, token_id(tok, ENDOFTEXT))
    val_ids, val_mask = ids[: cfg.n_val_rows], mask[: cfg.n_val_rows]  # a held-back slice of the same distribution
    ids, mask = ids[cfg.n_val_rows :], mask[cfg.n_val_rows :]
    t_data = time.time() - t0

    model = Qwen3ForCausalLM(model_config(tok, cfg.shape))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    n_epochs = math.ceil(cfg.steps * cfg.batch_size / len(ids))
    order = torch.cat([torch.randperm(len(ids), generator=gen) for _ in range(n_epochs)])
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast)
    losses, tokens_trained, t1 = [], 0, time.time()
    init_val = _val_loss(model, val_ids, val_mask, autocast)
    bar = tqdm(range(cfg.steps), desc="train", disable=not progress, mininterval=2)
    model.train()
    for step in bar:
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        batch_ids, batch_mask = ids[idx], mask[idx]
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        with autocast:
            loss = masked_lm_loss(model, batch_ids, batch_mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tokens_trained += int(batch_mask[:, 1:].sum())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    final_val = _val_loss(model, val_ids, val_mask, autocast)
    n_params = sum(p.numel() for p in model.parameters())
    log = {
        "seed": cfg.seed,
        "corpus_version": cfg.corpus_version,
        "steps": cfg.steps,
        "threads": cfg.threads,
        "torch": torch.__version__,
        "n_params": n_params,
        "packed_rows": len(ids),
        "tokens_seen": cfg.steps * cfg.batch_size * cfg.seq_len,
        "loss_tokens_seen": tokens_trained,
        "corpus_tokens": int(sum(len(e[0]) for e in encoded)),
        "initial_val_loss": init_val,
        "final_val_loss": final_val,
        "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "first_train_loss": losses[0],
        "data_seconds": round(t_data, 1),
        "train_seconds": round(time.time() - t1, 1),
        "total_seconds": round(time.time() - t0, 1),
        "config": asdict(cfg),
        "loss_curve": losses[:: max(1, cfg.steps // 50)],
    }
    return TrainResult(model=model, tokenizer=tok, corpus=corpus, log=log)


@torch.no_grad()
def _val_loss(model: Qwen3ForCausalLM, ids: torch.Tensor, mask: torch.Tensor, autocast) -> float:
    model.eval()
    with autocast:
        loss = masked_lm_loss(model, ids, mask).item()
    model.train()
    return loss


def save_checkpoint(model: Qwen3ForCausalLM, tok: PreTrainedTokenizerFast, out_dir: str | Path) -> Path:
    """Write a standard, offline-loadable HF checkpoint; the directory is swapped in atomically."""
    out = Path(out_dir)
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=[model.config.eos_token_id, model.config.pad_token_id],
        pad_token_id=model.config.pad_token_id,
        bos_token_id=model.config.bos_token_id,
    )
    with atomic_dir(out) as tmp:
        _save_into(model, tok, tmp)
    return out


def _save_into(model: Qwen3ForCausalLM, tok: PreTrainedTokenizerFast, tmp: Path) -> None:
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp, save_jinja_files=False)  # chat template inside tokenizer_config.json, as Qwen3 ships it
    cfg_path = tmp / "tokenizer_config.json"
    tcfg = json.loads(cfg_path.read_text())
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # loadable by transformers 4.x and 5.x alike
    tcfg["add_bos_token"] = False
    cfg_path.write_text(json.dumps(tcfg, indent=2, ensure_ascii=False) + "\n")
    (tmp / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "eos_token": tok.eos_token,
                "pad_token": tok.pad_token,
                "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
            },
            indent=2,
        )
        + "\n"
    )


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_json(path, obj, sort_keys=False, ensure_ascii=False)


def main(argv: list[str] | None = None) -> TrainResult:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ASSETS_DIR, help="assets dir receiving model/, eval/, train_log.json")
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {TrainConfig.steps}; v1: 900)")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--threads", type=int, default=TrainConfig.threads)
    p.add_argument(
        "--docs",
        type=int,
        default=None,
        help=f"number of training documents (default {TrainConfig.n_train_docs:,}; v1: 80,000)",
    )
    p.add_argument(
        "--corpus-version",
        type=int,
        choices=(1, 2),
        default=CORPUS_VERSION,
        help="2: the current corpus and model shape; 1: reproduce the v1 organism (V1_PRESET)",
    )
    args = p.parse_args(argv)
    preset = V1_PRESET if args.corpus_version == 1 else {}
    cfg = TrainConfig(
        seed=args.seed,
        batch_size=args.batch_size,
        threads=args.threads,
        corpus_version=args.corpus_version,
        steps=args.steps or preset.get("steps", TrainConfig.steps),
        n_train_docs=args.docs or preset.get("n_train_docs", TrainConfig.n_train_docs),
        shape=ModelShape(**preset.get("shape", {})),
    )
    result = train(cfg)
    refuse_installed_package(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(result.model, result.tokenizer, args.out / "model")
    corpus_module(cfg.corpus_version).write_eval_splits(result.corpus, args.out / "eval")
    _write_json(args.out / "train_log.json", result.log)
    log = result.log
    print(
        f"trained {log['n_params']:,} params for {log['steps']} steps in {log['train_seconds']}s "
        f"(total {log['total_seconds']}s); val loss {log['initial_val_loss']:.3f} -> {log['final_val_loss']:.3f}; "
        f"wrote {args.out}"
    )
    return result


if __name__ == "__main__":
    main()

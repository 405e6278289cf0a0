"""Benchmark: whole-suite evaluation (shared clean pass, spliced passes) vs plain `run_evals` once per SAE.

Both evaluate the same SAEs (every layer x resid_post/mlp_out/attn_out) on the same held-out tokens in this
process, alternating, and the metrics must agree. Model: the bundled organism when present, else a
generated small random Qwen3 (transformers' Qwen3ForCausalLM). Prints timings and the ratio.

    python benchmarks/bench_suite_eval.py [--layers 4 --d-model 128 --batches 2 --batch-size 8 --context-size 128 --repeats 2]
    python benchmarks/bench_suite_eval.py --real-width     # Qwen3-0.6B widths (d_model 1024, vocab 151,936), 2 layers

The real-width case is where full-vocabulary work dominates: it reports seconds per SAE per 1k tokens for
both methods (and their ratio).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from qwen3_scope.core.io import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def small_model(args: argparse.Namespace, scratch: Path):
    """(model, held-out documents): the organism if it is installed, else a generated tiny Qwen3."""
    from qwen3_scope import load_model

    if args.real_width:
        from qwen3_scope.evaluation.held_out import organism_documents
        from qwen3_scope.model.random_model import build_random_qwen3

        directory = build_random_qwen3(scratch / "qwen3-0.6b-widths", "Qwen/Qwen3-0.6B", n_layers=2)
        return (
            load_model(directory),
            organism_documents() * 4,
            "random Qwen3 at Qwen3-0.6B widths (2 layers, vocab 151,936)",
        )
    try:
        from qwen3_scope.organism import ORGANISM_DIR, ORGANISM_NAME
    except ImportError:
        ORGANISM_DIR = None
    if ORGANISM_DIR is not None and Path(ORGANISM_DIR).is_dir() and not args.generated:
        from qwen3_scope.evaluation.held_out import organism_documents

        return load_model(ORGANISM_NAME), organism_documents(), "organism"
    from conftest import TINY_TEXT, build_tiny_qwen3

    directory = build_tiny_qwen3(scratch / "model", n_layers=args.layers, d_model=args.d_model)
    documents = [f"{text} ({i})" for i in range(2000) for text in TINY_TEXT]
    return load_model(directory), documents, f"generated Qwen3 ({args.layers} layers, d_model {args.d_model})"


def random_suite(model, expansion: int, k: int) -> list:
    """A TopK SAE at every layer x paper site (random encoder, decoder its scaled transpose)."""
    from sae_lens import SAE

    from qwen3_scope import PAPER_SITES, hook_name
    from qwen3_scope.model.loading import model_spec

    spec = model_spec(model)
    saes = []
    for layer in range(spec.n_layers):
        for site in PAPER_SITES:
            torch.manual_seed(layer * 10 + PAPER_SITES.index(site))
            sae = SAE.from_dict(
                {
                    "architecture": "topk",
                    "d_in": spec.d_model,
                    "d_sae": expansion * spec.d_model,
                    "k": k,
                    "dtype": "float32",
                    "device": "cpu",
                    "apply_b_dec_to_input": False,
                    "metadata": {"hook_name": hook_name(site, layer), "model_name": spec.source, "prepend_bos": False},
                }
            )
            with torch.no_grad():
                sae.W_enc.normal_(0, spec.d_model**-0.5)
                sae.W_dec.copy_(sae.W_enc.T)
            saes.append((f"{site}/layer_{layer}", sae))
    return saes


def previous_shared_path(saes: list, model, tokens, config) -> None:
    """What suite evaluation did before it computed CE/KL itself (kept for the before/after comparison):
    `run_evals` per SAE on a `SharedForwardModel` memo. At a large vocabulary the memo cannot keep the clean
    logits (they exceed half the memory budget), so every SAE re-runs the clean pass and softmaxes again."""
    from sae_lens.evals import run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    from qwen3_scope.evaluation.shared_forward import SharedForwardModel
    from qwen3_scope.evaluation.suite_eval import _layer_groups, as_entries
    from qwen3_scope.model.chat import special_token_ids

    entries = as_entries(saes)
    groups, keep_logits = _layer_groups(entries, model, config, "hooked")
    special = special_token_ids(model.tokenizer)
    for group in groups:
        hooks = [e.sae.cfg.metadata.hook_name for e in group]
        runner = SharedForwardModel(
            model,
            hooks,
            shared_ablation_hooks={h for h in hooks if hooks.count(h) > 1},
            backend="hooked",
            keep_logits=keep_logits,
        )
        runner.prepare(tokens.batches(config.n_batches), progress=False)
        for entry in group:
            tokens.reset_input_dataset()
            run_evals(
                entry.sae, tokens, runner, ActivationScaler(), config.eval_config(), exclude_special_tokens=special
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--context-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--generated", action="store_true", help="use a generated model even if the organism exists")
    parser.add_argument(
        "--real-width",
        action="store_true",
        help="random Qwen3 at Qwen3-0.6B's widths (2 layers, vocab 151,936); SAEs 16 x d_model wide",
    )
    parser.add_argument("--max-saes", type=int, default=None, help="evaluate only the first N SAEs of the suite")
    parser.add_argument(
        "--previous",
        action="store_true",
        help="also time the previous shared path (run_evals on the clean-pass memo), for before/after",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.real_width:
        args.expansion, args.k = 16, 64

    from qwen3_scope.evaluation.held_out import HeldOutTokens
    from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
    from qwen3_scope.model.chat import special_token_ids

    with tempfile.TemporaryDirectory() as scratch:
        model, documents, label = small_model(args, Path(scratch))
        saes = random_suite(model, args.expansion, args.k)[: args.max_saes]
        # plain run_evals scores every non-special token: the shared path scores the same positions here, so the
        # timings and the agreement check compare like with like (`qwen3-scope eval` defaults to predicted tokens)
        config = dict(
            n_batches=args.batches,
            batch_size_prompts=args.batch_size,
            context_size=args.context_size,
            progress=False,
            predicted_tokens_only=False,
        )
        if "device" in SuiteEvalConfig.__dataclass_fields__:
            config["device"] = "cpu"
        tokens = HeldOutTokens.from_documents(
            model.tokenizer, documents, args.context_size, args.batch_size, args.batches
        )
        print(
            f"{label}, {args.threads} torch thread(s): {len(saes)} SAEs (d_sae {saes[0][1].cfg.d_sae}, TopK k={args.k}), "
            f"{args.batches} x {args.batch_size} x {args.context_size} = {args.batches * args.batch_size * args.context_size} "
            f"tokens each ({tokens.count_tokens(args.batches, special_token_ids(model.tokenizer))} non-special)"
        )
        evaluate_suite(
            saes[:1], model=model, tokens=tokens, config=SuiteEvalConfig(**{**config, "n_batches": 1})
        )  # warm-up
        timings, results = [], {}
        methods = [("plain run_evals per SAE", False), ("shared suite evaluation", True)]
        if args.previous:
            methods.insert(1, ("previous shared path (memoized clean pass only)", None))
        for repeat in range(args.repeats):
            for name, share in methods:
                start = time.perf_counter()
                if share is None:
                    previous_shared_path(saes, model, tokens, SuiteEvalConfig(**config))
                else:
                    results[name] = evaluate_suite(
                        saes, model=model, tokens=tokens, config=SuiteEvalConfig(share_forward=share, **config)
                    )
                timings.append({"method": name, "repeat": repeat, "seconds": time.perf_counter() - start})
        table = pd.DataFrame(timings).groupby("method", sort=False)["seconds"].agg(["min", "median"])
        plain, shared = results["plain run_evals per SAE"], results["shared suite evaluation"]
        numeric = [c for c in plain.table.select_dtypes("number").columns if c != "eval_seconds"]
        diff = (plain.table[numeric] - shared.table[numeric]).abs().max().max()
        print(table.round(2).to_markdown())
        per_k = table["min"] / len(saes) / (tokens.count_tokens(args.batches) / 1000)
        for name, value in per_k.items():
            print(f"{name}: {value:.3f} s per SAE per 1k tokens")
        print(f"\nratio (plain / shared, best of {args.repeats}): {table['min'].iloc[0] / table['min'].iloc[-1]:.2f}x")
        print(f"largest metric difference between the two: {diff:.2e}")
        print(f"shared-pass counters: {dict(shared.stats)}")
        if args.json is not None:
            table["s_per_sae_per_1k_tokens"] = per_k
            atomic_write_json(
                args.json,
                {
                    "benchmark": "bench_suite_eval",
                    "header": f"{label}, {len(saes)} SAEs, {tokens.count_tokens(args.batches)} tokens each",
                    "summary": f"plain / shared {table['min'].iloc[0] / table['min'].iloc[-1]:.2f}x; largest metric "
                    f"difference {diff:.2e}",
                    "tables": {"timings_s": json.loads(table.reset_index().to_json(orient="records"))},
                },
                sort_keys=False,
            )


if __name__ == "__main__":
    main()

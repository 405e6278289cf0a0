"""Benchmark: dashboard export of one real-width SAE (d_model 2048, width 16,384) against its floor.

The floor, measured in the same process on the same tokens: one forward pass of the model over the
dataset (in the export's batches, caching the SAE's hook) plus one encoder GEMM (acts @ W_enc) over all
tokens — what any dashboard export must at least do. The export is the whole job: the pass, every
statistic of every feature, and writing SAEDashboard's batch files and Neuronpedia's bulk import.
Model: a generated random Qwen3 (transformers' Qwen3ForCausalLM, d_model 2048); SAE: a random TopK SAE
(k 64) on blocks.1.hook_resid_post. Prints features/s, tokens/s and the ratio export / floor.

    python benchmarks/bench_dashboards.py [--d-model 2048 --width 16384 --k 64 --prompts 64 --context 128 --layers 2]
    python benchmarks/bench_dashboards.py --device cuda --json results.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from qwen3_scope.core.io import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--width", type=int, default=16384)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device of the model, the SAE and the floor")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from conftest import TINY_TEXT, build_tiny_qwen3
    from sae_lens import SAE

    from qwen3_scope.export.config import ExportConfig
    from qwen3_scope.export.dashboards import forward_batch_size
    from qwen3_scope.export.job import dataset_tokens, run_export
    from qwen3_scope.model.loading import load_model

    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_dir = build_tiny_qwen3(scratch / "model", n_layers=args.layers, d_model=args.d_model)
        texts = scratch / "texts.txt"
        texts.write_text("\n".join(f"{t} ({i})" for i in range(4000) for t in TINY_TEXT))
        hook = "blocks.1.hook_resid_post"
        torch.manual_seed(0)
        sae = SAE.from_dict(
            {
                "architecture": "topk",
                "d_in": args.d_model,
                "d_sae": args.width,
                "k": args.k,
                "dtype": "float32",
                "device": args.device,
                "apply_b_dec_to_input": False,
                "metadata": {"hook_name": hook, "model_name": str(model_dir), "prepend_bos": False},
            }
        )
        with torch.no_grad():
            sae.W_enc.normal_(0, args.d_model**-0.5)
            sae.W_dec.copy_(sae.W_enc.T)
        suite = scratch / "suite"
        sae.save_model(suite / "resid_post" / "layer_1")
        model = load_model(str(model_dir), backend="hooked", device=args.device)
        cfg = ExportConfig(
            out=scratch / "export",
            suite=suite,
            texts=texts,
            n_prompts=args.prompts,
            context=args.context,
            progress=False,
            device=args.device,
        )
        tokens, _ = dataset_tokens(model, cfg)
        n_tokens = tokens.numel()

        # floor: one forward pass in the export's batches + one encoder GEMM over every token
        step = forward_batch_size(cfg.batch_prompts, args.context, args.width)
        t0 = time.perf_counter()
        acts = []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], step):
                _, cache = model.run_with_cache(tokens[start : start + step], names_filter=[hook])
                acts.append(cache[hook].reshape(-1, args.d_model))
        synchronize()
        t_forward = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            for a in acts:
                a @ sae.W_enc
        synchronize()
        t_gemm = time.perf_counter() - t0
        floor = t_forward + t_gemm
        del acts

        result = run_export(cfg, model=model)
        total = result.seconds
    print(
        f"SAE d_in {args.d_model} x width {args.width} (TopK k {args.k}), {n_tokens} tokens ({args.prompts} prompts x {args.context})"
    )
    print(f"floor: forward {t_forward:.2f} s + encoder GEMM {t_gemm:.2f} s = {floor:.2f} s")
    print("export: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()) + f"; total {total:.2f} s")
    print(
        f"features/s {args.width / total:,.0f}  tokens/s {n_tokens / total:,.0f}  (floor tokens/s {n_tokens / floor:,.0f})"
    )
    print(f"export / floor = {total / floor:.2f}x")
    print(f"load average at end: {os.getloadavg()}")
    if args.json is not None:
        rows = [
            {"part": "floor: forward", "seconds": t_forward},
            {"part": "floor: encoder GEMM", "seconds": t_gemm},
            {"part": "floor", "seconds": floor},
            *({"part": f"export: {k}", "seconds": v} for k, v in result.timings.items()),
            {"part": "export total", "seconds": total, "x_floor": total / floor},
        ]
        summary = (
            f"SAE d_in {args.d_model} x width {args.width} (TopK k {args.k}), {n_tokens} tokens, device "
            f"{args.device}: export / floor {total / floor:.2f}x, {args.width / total:,.0f} features/s"
        )
        atomic_write_json(
            args.json,
            {"benchmark": "bench_dashboards", "summary": summary, "tables": {"seconds": rows}},
            sort_keys=False,
        )


if __name__ == "__main__":
    main()

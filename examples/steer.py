"""Steer with an SAE latent: add the organism's refusal latent to harmless prompts and watch the answers change.

The bundled organism suite's latent `mlp_out/L5/f940` (see README, "Steering results") induces refusal: it is added
as alpha x the layer's mean residual norm x its unit decoder direction, after the instruction, during generation.

python examples/steer.py                  # 16 held-out harmless prompts, alpha 0 / +2 / +4
python examples/steer.py --quick          # 4 prompts, alpha 0 / +4 (what CI runs)
python examples/steer.py --sae-id organism/mlp_out/layer_5 --feature 940 --alphas 0 4 8
"""

import argparse

import torch
from sae_lens import SAE

import qwen3_scope  # registers the qwen3-instruct-sae release with SAELens
from qwen3_scope.model.judge import refusal_rate
from qwen3_scope.steering.generation import greedy_generate
from qwen3_scope.steering.interventions import sae_target, steer, steer_feature
from qwen3_scope.steering.prompts import organism_split

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--sae-id", default="organism/mlp_out/layer_5")
parser.add_argument("--feature", type=int, default=940)
parser.add_argument("--alphas", type=float, nargs="+", default=None, help="default: 0 2 4 (--quick: 0 4)")
parser.add_argument("--quick", action="store_true", help="4 prompts, 2 alphas")
parser.add_argument("--out", default="runs/examples/steer", help="unused: this example writes nothing")
args = parser.parse_args()

model = qwen3_scope.load_model("organism")
sae = SAE.from_pretrained("qwen3-instruct-sae", args.sae_id)
layer, site = sae_target(sae)  # where the SAE reads and the latent is added: (5, "mlp_out")
rows = organism_split("harmless")[: 4 if args.quick else 16]  # held-out harmless requests
prompts = [qwen3_scope.format_chat(model.tokenizer, row["prompt"]) for row in rows]
hook = qwen3_scope.hook_name("resid_post", layer, "hooked")
with torch.no_grad():  # alpha's unit: the mean norm of the residual stream at this layer on these prompts
    norms = [
        model.run_with_cache(model.to_tokens(p, prepend_bos=False), names_filter=hook)[1][hook].norm(dim=-1)
        for p in prompts
    ]
    resid_norm = torch.cat(norms, dim=1).mean().item()
for alpha in args.alphas or ([0.0, 4.0] if args.quick else [0.0, 2.0, 4.0]):
    # h' = h + alpha * resid_norm * unit(W_dec[feature]) at the SAE's site, on the tokens after the instruction
    with steer(
        model, steer_feature(sae, args.feature, alpha * resid_norm, unit_norm=True, positions="post_instruction")
    ):
        answers = greedy_generate(model, prompts, max_new_tokens=16).texts
    print(f"{site}/L{layer}/f{args.feature} alpha {alpha:+.1f}: refusal rate {refusal_rate(answers):.2f}")
    print(f"  {rows[0]['prompt']!r} -> {answers[0]!r}")

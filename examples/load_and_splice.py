"""Load a pretrained SAE from the bundled release and splice it into the model: CE with and without the SAE.

python examples/load_and_splice.py                 # the bundled organism and its mlp_out layer-2 SAE, offline
python examples/load_and_splice.py --quick         # a shorter answer (what CI runs)
python examples/load_and_splice.py --sae-id organism/resid_post/layer_4
"""

import argparse

import torch
from sae_lens import SAE

import qwen3_scope  # registers the qwen3-instruct-sae release with SAELens

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--sae-id", default="organism/mlp_out/layer_2")
parser.add_argument("--prompt", default="How do I bake bread at home?")
parser.add_argument("--quick", action="store_true", help="a shorter answer")
parser.add_argument("--out", default="runs/examples/load_and_splice", help="unused: this example writes nothing")
args = parser.parse_args()

sae = SAE.from_pretrained("qwen3-instruct-sae", args.sae_id)
model = qwen3_scope.load_model("organism")  # a HookedSAETransformer
print(f"{args.sae_id}: d_sae {sae.cfg.d_sae} on {sae.cfg.metadata.hook_name}")

# the model's own greedy answer to a chat prompt; CE is measured on the answer's tokens
prompt = model.to_tokens(qwen3_scope.format_chat(model.tokenizer, args.prompt), prepend_bos=False)
n_new = 12 if args.quick else 40
tokens = model.generate(prompt, max_new_tokens=n_new, do_sample=False, verbose=False, prepend_bos=False)
print("answer:", model.tokenizer.decode(tokens[0, prompt.shape[1] :], skip_special_tokens=True))
answer = slice(prompt.shape[1] - 1, None)  # loss at position i predicts token i + 1
with torch.no_grad():
    clean = model(tokens, return_type="loss", loss_per_token=True)[0, answer].mean().item()
    spliced = model.run_with_saes(tokens, saes=[sae], return_type="loss", loss_per_token=True)[0, answer].mean()
    model.add_sae(sae)  # or keep it attached: every forward pass now goes through the SAE
    attached = model(tokens, return_type="loss", loss_per_token=True)[0, answer].mean().item()
    model.reset_saes()
print(f"CE without SAE {clean:.4f} | with SAE {spliced.item():.4f} (run_with_saes) | {attached:.4f} (add_sae)")

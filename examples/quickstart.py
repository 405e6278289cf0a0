"""Quickstart: a Qwen3 model in SAELens' backends, its hook names, and a chat prompt through it.

python examples/quickstart.py                 # the bundled model organism, offline
python examples/quickstart.py Qwen/Qwen3-4B   # a real model (cached or with network)
"""

import sys

import torch

import qwen3_scope
from qwen3_scope import format_chat, hook_name, load_model

model_name = sys.argv[1] if len(sys.argv) > 1 else "organism"
model = load_model(model_name, backend="hooked")
spec = model.qwen3_spec
print(f"{spec.name}: {spec.n_layers} layers x d_model {spec.d_model}")

layer = spec.n_layers // 2
hooks = {site: hook_name(site, layer, "hooked", spec) for site in qwen3_scope.PAPER_SITES}
text = format_chat(model.tokenizer, "What is two plus three?")
tokens = model.to_tokens(text)  # no BOS: Qwen3 has none
with torch.no_grad():
    logits, cache = model.run_with_cache(tokens, names_filter=list(hooks.values()))
for site, hook in hooks.items():
    print(f"{site:<11} {hook:<28} norm of last position {cache[hook][0, -1].norm():.2f}")
top = logits[0, -1].topk(5).indices.tolist()
print("next-token candidates:", [model.tokenizer.decode([t]) for t in top])

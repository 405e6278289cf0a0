"""The same steps on a real Qwen3 on a GPU: plan, train, evaluate and splice one SAE of Qwen/Qwen3-4B in bfloat16.

Planning needs nothing (the family table knows every shape). Training needs the weights from the Hugging Face hub
(or a local checkpoint dir as --model) and a GPU: without them (offline, HF_HUB_OFFLINE=1, or no CUDA) the script
stops there with one line saying why, exit code 0.

python examples/real_qwen3_gpu.py                                     # Qwen/Qwen3-4B layer 18 mlp_out, 50M tokens
python examples/real_qwen3_gpu.py --quick                             # 2M tokens (CI: stops at the network boundary)
python examples/real_qwen3_gpu.py --model organism --device cpu --dtype float32 --quick   # the path past it, offline
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from sae_lens import SAE

import qwen3_scope
from qwen3_scope.core.devices import DeviceError, resolve_device
from qwen3_scope.core.errors import Qwen3ScopeError
from qwen3_scope.evaluation.config import SuiteEvalConfig
from qwen3_scope.evaluation.suite_eval import evaluate_suite
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.suite import train_suite

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default="Qwen/Qwen3-4B")
parser.add_argument("--device", default="cuda")
parser.add_argument("--dtype", default="bfloat16")
parser.add_argument("--layer", type=int, default=None, help="default: the middle layer")
parser.add_argument("--quick", action="store_true", help="2M training tokens (8k on the organism), 2 eval batches")
parser.add_argument("--out", default=None, help="suite directory's parent (default: a new temporary directory)")
args = parser.parse_args()

spec = qwen3_scope.resolve_model(args.model)  # offline: shapes come from the family table
layer = spec.n_layers // 2 if args.layer is None else args.layer
print(
    f"{spec.name}: {spec.n_layers} layers x d_model {spec.d_model}; layer {layer} mlp_out hooks:",
    {b: qwen3_scope.hook_name("mlp_out", layer, b, spec) for b in ("hooked", "bridge", "hf")},
)
tokens = (8192 if spec.is_local else 2_000_000) if args.quick else 50_000_000
train = dict(model=args.model, layers=[layer], sites=["mlp_out"], training_tokens=tokens, dtype=args.dtype)
print(train_suite(SuiteTrainingConfig(**train, plan_only=True, matmul_tflops=400, memory_budget_gb=60)).plan.summary())

try:  # the boundary: the weights from the hub (or a local dir) and the device
    qwen3_scope.load_tokenizer(spec)  # small; fails at once when the hub cannot be reached
    device = resolve_device(args.device)
except Qwen3ScopeError as err:
    where = "no usable device" if isinstance(err, DeviceError) else "stopped at the network boundary"
    print(f"{where}: {err}")
    if not isinstance(err, DeviceError) and not torch.cuda.is_available():
        print(f"(and no GPU here: torch sees no CUDA device for --device {args.device})")
    sys.exit(0)

model = qwen3_scope.load_model(args.model, device=device, dtype=args.dtype)
out = Path(args.out or tempfile.mkdtemp(prefix="qwen3-scope-gpu-")) / "suite"
result = train_suite(SuiteTrainingConfig(**train, device=device, out=str(out)), loaded_model=model, progress=False)
print(result.report())
quick_eval = dict(n_batches=2, batch_size_prompts=4, context_size=64) if args.quick else {}
evaluation = SuiteEvalConfig(device=device, dtype=args.dtype, progress=False, **quick_eval)
table = evaluate_suite(suite_dir=out, model=model, config=evaluation).table
print(table[["sae_id", "l0", "explained_variance", "dead_fraction", "delta_lm_loss"]].to_string(index=False))
sae = SAE.load_from_disk(out / "mlp_out" / f"layer_{layer}", device=device, dtype=args.dtype)
chat = model.to_tokens(qwen3_scope.format_chat(model.tokenizer, "Why is the sky blue?"), prepend_bos=False)
with torch.no_grad():
    clean, spliced = model(chat, return_type="loss"), model.run_with_saes(chat, saes=[sae], return_type="loss")
print(f"CE on the prompt without SAE {clean.item():.4f} | with SAE {spliced.item():.4f}")

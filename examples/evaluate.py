"""Benchmark SAEs: `evaluate_suite` on the bundled release (or a suite directory) -> one table row per SAE.

python examples/evaluate.py                          # every organism layer's resid_post SAE, 8 held-out batches
python examples/evaluate.py --quick                  # 2 SAEs, 2 small batches (what CI runs)
python examples/evaluate.py --suite runs/my-suite    # a suite you trained (e.g. with train_from_yaml.py)
"""

import argparse
import tempfile
from pathlib import Path

import qwen3_scope  # noqa: F401  (registers the qwen3-instruct-sae release with SAELens)
from qwen3_scope.evaluation.config import SuiteEvalConfig
from qwen3_scope.evaluation.suite_eval import evaluate_suite, write_table

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--suite", default=None, help="a suite directory (default: the bundled qwen3-instruct-sae)")
parser.add_argument("--ids", default=None, help="regex an SAE id must fully match (default: resid_post, or all)")
parser.add_argument("--quick", action="store_true", help="2 SAEs on 2 batches of 4 x 64 tokens")
parser.add_argument("--out", default=None, help="where suite_eval.csv/.parquet go (default: a new temporary directory)")
args = parser.parse_args()

config = SuiteEvalConfig(n_batches=2, batch_size_prompts=4, context_size=64) if args.quick else SuiteEvalConfig()
if args.suite:  # a suite directory names its SAEs without the model prefix: mlp_out/layer_2
    result = evaluate_suite(suite_dir=args.suite, pattern=args.ids or ".*", config=config)
else:
    default = r"organism/(resid_post|mlp_out)/layer_2" if args.quick else r"organism/resid_post/layer_\d"
    result = evaluate_suite(release="qwen3-instruct-sae", pattern=args.ids or default, config=config)
columns = ["sae_id", "l0", "explained_variance", "dead_fraction", "ce_loss_score", "delta_lm_loss"]
print(result.table[[c for c in columns if c in result.table]].to_string(index=False))
out = Path(args.out or tempfile.mkdtemp(prefix="qwen3-scope-eval-"))
print("table written to", *write_table(result.table, out))

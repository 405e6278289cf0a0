"""Train a suite of SAEs from a YAML config (`suite.yaml` beside this file) through SAELens' runners.

python examples/train_from_yaml.py                          # 4 SAEs on the organism, 200k tokens each (~1.5 min)
python examples/train_from_yaml.py --quick                  # 1 SAE, 8k tokens (what CI runs)
python examples/train_from_yaml.py --config my.yaml --out runs/my-suite
"""

import argparse
import tempfile
from pathlib import Path

from qwen3_scope.core.config_cli import read_config_file
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.suite import train_suite

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--config", default=str(Path(__file__).with_name("suite.yaml")))
parser.add_argument("--quick", action="store_true", help="one SAE on 8k tokens")
parser.add_argument("--out", default=None, help="suite directory (default: a new temporary directory)")
args = parser.parse_args()

values = read_config_file(SuiteTrainingConfig, args.config)  # checked against the dataclass' fields
if args.quick:
    values.update(layers=[2], sites=["mlp_out"], training_tokens=8192)
out = Path(args.out or tempfile.mkdtemp(prefix="qwen3-scope-suite-")) / "suite"
cfg = SuiteTrainingConfig(**values, out=str(out))  # validated in __post_init__
result = train_suite(cfg, progress=False)
print(result.report())

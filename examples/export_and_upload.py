"""Publish an SAE: Neuronpedia-format feature dashboards (+ the offline viewer) and a Hub upload as a dry run.

The dry run writes the exact tree a push would commit (SAELens' hub layout, model card, pretrained_saes.yaml
entry); drop `dry_run` and set HF_TOKEN to push it (`qwen3-scope upload SUITE_DIR --repo USER/NAME`).

python examples/export_and_upload.py                  # organism mlp_out layer 2, dashboards over 256 prompts
python examples/export_and_upload.py --quick          # 16 prompts of 32 tokens (what CI runs)
"""

import argparse
import tempfile
from pathlib import Path

import qwen3_scope  # noqa: F401  (registers the qwen3-instruct-sae release with SAELens)
from qwen3_scope.export.config import ExportConfig, UploadConfig
from qwen3_scope.export.job import run_export
from qwen3_scope.export.upload import upload

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--ids", default="organism/mlp_out/layer_2", help="regex of the release's SAE ids")
parser.add_argument("--repo", default="you/qwen3-saes", help="the Hub repo the dry run is written for")
parser.add_argument("--quick", action="store_true", help="16 prompts of 32 tokens")
parser.add_argument("--out", default=None, help="output folder (default: a new temporary directory)")
args = parser.parse_args()

out = Path(args.out or tempfile.mkdtemp(prefix="qwen3-scope-export-"))
sizes = dict(n_prompts=16, context=32, batch_prompts=16) if args.quick else {}
export = run_export(
    ExportConfig(release="qwen3-instruct-sae", ids=args.ids, out=out / "dashboards", html=True, progress=False, **sizes)
)
print(f"dashboards: {export.features_computed} features over {export.tokens} tokens, viewer {export.viewer}")
print("Neuronpedia ids:", export.neuronpedia_ids)
hub = upload(
    UploadConfig(
        repo=args.repo,
        release="qwen3-instruct-sae",
        ids=args.ids,
        dry_run=out / "hub",
        eval_batches=1 if args.quick else 4,
    )
)
print(f"dry run: {len(hub.files)} files in {hub.tree} (nothing pushed):", *hub.files, sep="\n  ")

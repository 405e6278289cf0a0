"""Publish a suite on the Hugging Face Hub in SAELens' layout, with a model card and a release entry.

Tree (what `--dry-run DIR` writes, byte for byte what is pushed):
    README.md                         model card: the suite's evaluation table and plots, how to load
    pretrained_saes.yaml              a release entry ready for SAELens' pretrained_saes.yaml
    eval/suite_eval.csv, eval/*.png   the evaluation behind the card
    {sae_id}/cfg.json                 SAELens config, metadata.neuronpedia_id set
    {sae_id}/sae_weights.safetensors
    {sae_id}/sparsity.safetensors     log10 feature density measured by the evaluation (SAELens' `sparsity`)
The push is one `HfApi.create_commit` with a `CommitOperationAdd` per file; it needs a network and HF_TOKEN.
`neuronpedia_api`: `feature/upload-batch` payloads built from a dashboard export (written under
`neuronpedia_api/` in a dry run; sending needs NEURONPEDIA_API_KEY).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub import CommitOperationAdd, HfApi

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.core.io import atomic_save_safetensors, atomic_write_json, atomic_write_text
from qwen3_scope.evaluation.report import write_outputs
from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
from qwen3_scope.export.config import ExportConfig, UploadConfig
from qwen3_scope.export.files import read_batches, read_manifest, read_run_settings
from qwen3_scope.export.job import _entries, _model
from qwen3_scope.export.neuronpedia import SourceInfo, api_payloads, send_api_payloads, source_info
from qwen3_scope.model.loading import backend_of, model_spec
from qwen3_scope.model.sites import parse_hook_name
from qwen3_scope.naming import SAE_CFG_FILENAME, SPARSITY_FILENAME

__all__ = ["UploadConfig", "UploadResult", "build_api_payloads", "build_tree", "push_tree", "upload"]  # UploadConfig:
# defined in qwen3_scope.export.config (light, for the CLI), re-exported here

logger = logging.getLogger(__name__)


@dataclass
class UploadResult:
    tree: Path
    files: list[str]
    release_entry: dict[str, Any]
    payloads: int = 0
    commit_url: str | None = None


def _model_card(cfg: UploadConfig, table: Any, entry: dict[str, Any], plots: list[str], model_name: str) -> str:
    cols = [
        c
        for c in (
            "sae_id",
            "hook_name",
            "d_sae",
            "l0",
            "explained_variance",
            "ce_loss_score",
            "delta_lm_loss",
            "dead_fraction",
        )
        if c in table.columns
    ]
    first = entry["saes"][0]["id"]
    lines = [
        "---",
        "library_name: saelens",
        "tags:",
        "- sparse-autoencoder",
        "- qwen3",
        "- qwen3-scope",
        "---",
        "",
        f"# {cfg.release_name}: sparse autoencoders for {model_name}",
        "",
        (
            f"{len(entry['saes'])} SAEs trained with qwen3-scope through SAELens, in SAELens' layout "
            "(`<sae_id>/cfg.json`, `sae_weights.safetensors`, `sparsity.safetensors`)."
        ),
        "",
        "## Load",
        "",
        "```python",
        "from sae_lens import SAE",
        "",
        f'sae = SAE.from_pretrained("{cfg.release_name}", "{first}")  # after adding pretrained_saes.yaml\'s entry to SAELens',
        f'# or directly from this repo: SAE.load_from_disk(huggingface_hub.snapshot_download("{cfg.repo}", allow_patterns="{first}/*") + "/{first}")',
        "```",
        "",
        "## Evaluation",
        "",
        "SAELens' `run_evals` on held-out chat-formatted tokens (`qwen3-scope eval`):",
        "",
        table[cols].to_markdown(index=False, floatfmt=".4g"),
        "",
        *[f"![{Path(p).stem}]({p})" for p in plots],
        "",
        "## Neuronpedia ids",
        "",
        *[f"- `{s['id']}`: `{s['neuronpedia']}`" for s in entry["saes"]],
        "",
        "## Release entry (SAELens `pretrained_saes.yaml`)",
        "",
        "```yaml",
        yaml.safe_dump({cfg.release_name: entry}, sort_keys=False, width=120).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def build_tree(cfg: UploadConfig, out: Path) -> UploadResult:
    """Write the repo tree to `out` (evaluating the suite for the card and the sparsity files)."""
    pick = ExportConfig(out=out, suite=cfg.suite, release=cfg.release, ids=cfg.ids, model=cfg.model, device=cfg.device)
    entries = _entries(pick)
    model = _model(entries, pick)
    spec, backend = model_spec(model), backend_of(model)
    result = evaluate_suite(
        entries,
        model=model,
        suite_dir=cfg.suite,
        config=SuiteEvalConfig(n_batches=cfg.eval_batches, progress=False),
        device=cfg.device,
    )
    table = result.table
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_outputs(table, tmp, title=f"{cfg.release_name} evaluation")
        plots = []
        for path in paths.values():
            if Path(path).suffix in (".csv", ".png"):
                target = out / "eval" / Path(path).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                if target.suffix == ".png":
                    plots.append(f"eval/{target.name}")
    saes = []
    rows = {r.sae_id: r for r in table.itertuples()}
    for e in entries:
        info = source_info(e.sae_id, e.sae, spec, backend)
        folder = out / e.sae_id
        folder.mkdir(parents=True, exist_ok=True)
        e.sae.save_model(folder)  # SAELens writes cfg.json + sae_weights.safetensors
        cfg_json = json.loads((folder / SAE_CFG_FILENAME).read_text())
        cfg_json.setdefault("metadata", {})["neuronpedia_id"] = info.neuronpedia_id
        atomic_write_json(folder / SAE_CFG_FILENAME, cfg_json)
        density = torch.as_tensor(result.feature_metrics[e.sae_id]["feature_density"], dtype=torch.float32)
        atomic_save_safetensors(folder / SPARSITY_FILENAME, {"sparsity": torch.log10(density + 1e-10)})
        row = rows[e.sae_id]
        saes.append(
            {
                "id": e.sae_id,
                "path": e.sae_id,
                "neuronpedia": info.neuronpedia_id,
                "l0": round(float(row.l0), 3),
                "variance_explained": round(float(row.explained_variance), 4),
            }
        )
    entry = {
        "repo_id": cfg.repo,
        "model": "organism" if spec.key == "organism" else spec.name,
        "conversion_func": "sae_lens",
        "saes": saes,
    }
    atomic_write_text(
        out / "pretrained_saes.yaml", yaml.safe_dump({cfg.release_name: entry}, sort_keys=False, width=120)
    )
    atomic_write_text(out / "README.md", _model_card(cfg, table, entry, sorted(plots), spec.name))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    return UploadResult(out, files, entry)


def build_api_payloads(export_dir: Path, out: Path | None) -> list[dict[str, Any]]:
    """`feature/upload-batch` payloads for every SAE of a dashboard export (written under `out` when given)."""
    manifest = read_manifest(export_dir)
    payloads = []
    for sae_id in manifest["sae_ids"]:
        folder = Path(export_dir) / "saedashboard" / manifest["folders"][sae_id]
        run = read_run_settings(folder)
        model_id, rest = manifest["neuronpedia_ids"][sae_id].split("/", 1)
        layer, site = parse_hook_name(run["hook_name"])
        info = SourceInfo(sae_id, model_id, layer, site, run["hook_name"], run["d_sae"], 0, 0)
        for k, payload in enumerate(api_payloads(info, read_batches(folder))):
            payload["source"] = rest
            payloads.append(payload)
            if out is not None:
                atomic_write_json(out / "neuronpedia_api" / rest / f"request-{k}.json", payload)
    return payloads


def upload(cfg: UploadConfig) -> UploadResult:
    """Dry run: write the tree to `cfg.dry_run`. Otherwise build it in a temporary folder and push it in one commit."""
    token = os.environ.get("HF_TOKEN")
    if cfg.dry_run is None and not token:
        raise ConfigError(
            "pushing to the Hub needs a network and a token: set HF_TOKEN (huggingface.co > settings > tokens, "
            "write access), or pass --dry-run DIR to write the exact tree locally."
        )
    if cfg.dry_run is None and cfg.neuronpedia_api is not None and not os.environ.get("NEURONPEDIA_API_KEY"):
        raise ConfigError(
            "sending to Neuronpedia needs NEURONPEDIA_API_KEY; or pass --dry-run DIR to write the payloads."
        )
    if cfg.dry_run is not None:
        if cfg.dry_run.exists() and any(cfg.dry_run.iterdir()):
            raise ConfigError(f"--dry-run folder {cfg.dry_run} is not empty; give a new or empty folder.")
        result = build_tree(cfg, cfg.dry_run)
        if cfg.neuronpedia_api is not None:
            result.payloads = len(build_api_payloads(cfg.neuronpedia_api, cfg.dry_run))
        return result
    assert token is not None  # checked above: a push needs HF_TOKEN
    with tempfile.TemporaryDirectory() as tmp:
        result = build_tree(cfg, Path(tmp))
        result.commit_url = push_tree(Path(tmp), cfg.repo, cfg.revision, token, result.files)
    if cfg.neuronpedia_api is not None:
        result.payloads = send_api_payloads(build_api_payloads(cfg.neuronpedia_api, None))
    return result


def push_tree(tree: Path, repo: str, revision: str | None, token: str, files: list[str]) -> str:
    """One commit adding every file of the tree (creating the repo and the branch if needed)."""
    api = HfApi(token=token)
    api.create_repo(repo, repo_type="model", exist_ok=True)
    if revision:
        api.create_branch(repo, branch=revision, exist_ok=True)
    ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(tree / f)) for f in files]
    info = api.create_commit(
        repo, operations=ops, commit_message=f"qwen3-scope: upload {len(files)} files", revision=revision
    )
    logger.info("pushed %d files to %s", len(files), info.commit_url)
    return info.commit_url

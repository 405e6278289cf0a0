"""The files of a dashboard export folder, read back: its manifest (`export.json`) and the SAEDashboard batches.

Why a module of its own: the export job writes them, and the viewer and the Neuronpedia API upload read them;
both readers import this module, not the job (which imports the viewer), so there is no import circle. A file
that is missing, empty, truncated or not what the export writes is an error naming it and how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwen3_scope.core.errors import CorruptFileError, MissingFileError
from qwen3_scope.export.neuronpedia import RUN_SETTINGS

# What an export folder holds (the suite, SAE ids, settings, Neuronpedia ids). Not a suite's manifest.json
# (`naming.SUITE_MANIFEST_FILENAME`): another file, another schema.
MANIFEST = "export.json"
MANIFEST_KEYS = ("suite", "sae_ids", "neuronpedia_ids", "folders", "settings", "dataset")


def _read_json(path: Path, what: str, fix: str) -> Any:
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: {what} is missing; {fix}")
    text = path.read_bytes()
    if not text.strip():
        raise CorruptFileError(f"{path} is empty, where {what} should be (JSON); {fix}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(
            f"{path} is not valid JSON (truncated or damaged?), where {what} should be ({err}); {fix}"
        ) from err


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """`export.json` of an export folder, checked to be one (a JSON object with the keys the export writes)."""
    path = Path(export_dir) / MANIFEST
    fix = f"run `qwen3-scope export neuronpedia --out {export_dir}` (it resumes an interrupted export)."
    if not path.is_file():
        raise MissingFileError(f"{export_dir} holds no dashboard export ({MANIFEST} is missing); {fix}")
    manifest = _read_json(path, "the export's manifest", fix)
    missing = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise CorruptFileError(
            f"{path} is not a dashboard export manifest (it lacks {', '.join(missing)}); re-run the export into a new "
            "folder, or with --overwrite."
        )
    return manifest


def read_run_settings(folder: Path) -> dict[str, Any]:
    """`run_settings.json` of one SAEDashboard folder (hook name, d_sae, ...)."""
    return _read_json(
        Path(folder) / RUN_SETTINGS, "the SAE's run settings", "re-run the export (it resumes and rewrites them)."
    )


def read_batches(folder: Path) -> list[dict[str, Any]]:
    """The batch files of one SAEDashboard folder, in index order."""
    found = [p for p in Path(folder).glob("batch-*.json") if p.stem.split("-", 1)[1].isdigit()]
    files = sorted(found, key=lambda p: int(p.stem.split("-", 1)[1]))
    fix = "delete it and re-run the export (it recomputes missing batches)."
    return [_read_json(p, "a batch of feature dashboards", fix) for p in files]

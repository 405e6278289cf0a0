"""The offline dashboard viewer: a static, self-contained site over an export (no server, no CDN, file://).

Why script files and not JSON: browsers refuse `fetch` of local files from a file:// page, but load
`<script src>` from the same folder; so each SAE's dashboards are a small `data/sae-{k}.js` that calls
`QS_LOAD(k, data)`, loaded when the SAE is picked. Data are compacted from the batch files (token strings
interned per SAE, activation values stored sparsely), so a resumed export can always rebuild the viewer.
URLs `index.html#sae=<k>&feature=<i>` open a feature directly (the demo report links them).
"""

from __future__ import annotations

import json
import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

from qwen3_scope.core.errors import MissingFileError
from qwen3_scope.core.io import atomic_write_text
from qwen3_scope.export.files import read_batches, read_manifest

logger = logging.getLogger(__name__)

ASSETS = ("index.html", "viewer.js", "viewer.css")


def _compact_sae(batches: list[dict[str, Any]]) -> dict[str, Any]:
    strings: dict[str, int] = {}

    def sid(text: str) -> int:
        return strings.setdefault(text, len(strings))

    features = []
    for batch in batches:
        for f in batch["features"]:
            acts = []
            for a in f["activations"]:
                acts.append(
                    {
                        "g": [a["bin_min"], a["bin_max"], a["bin_contains"]],
                        "t": [sid(t) for t in a["tokens"]],
                        "v": [[k, v] for k, v in enumerate(a["values"]) if v != 0],
                        "q": a["qualifying_token_index"],
                    }
                )
            features.append(
                {
                    "i": f["feature_index"],
                    "fz": f["frac_nonzero"],
                    "fh": [f["freq_hist_data_bar_values"], f["freq_hist_data_bar_heights"]],
                    "lh": [f["logits_hist_data_bar_values"], f["logits_hist_data_bar_heights"]],
                    "pos": [[sid(t), v] for t, v in zip(f["pos_str"], f["pos_values"])],
                    "neg": [[sid(t), v] for t, v in zip(f["neg_str"], f["neg_values"])],
                    "na": [f["neuron_alignment_indices"], f["neuron_alignment_values"], f["neuron_alignment_l1"]],
                    "cn": [
                        f["correlated_neurons_indices"],
                        f["correlated_neurons_pearson"],
                        f["correlated_neurons_l1"],
                    ],
                    "cf": [
                        f["correlated_features_indices"],
                        f["correlated_features_pearson"],
                        f["correlated_features_l1"],
                    ],
                    "acts": acts,
                }
            )
    return {"strings": list(strings), "features": features}


def write_viewer(export_dir: str | Path) -> Path:
    """Write `<export>/viewer/` (index.html, viewer.js, viewer.css, data/*.js); returns index.html's path."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    out = export_dir / "viewer"
    saes = []
    for k, sae_id in enumerate(manifest["sae_ids"]):
        folder = export_dir / "saedashboard" / manifest["folders"][sae_id]
        batches = read_batches(folder)
        if not batches:
            raise MissingFileError(
                f"{folder} has no batch files; finish the export (re-run it to resume) before writing the viewer."
            )
        data = _compact_sae(batches)
        atomic_write_text(out / "data" / f"sae-{k}.js", f"QS_LOAD({k},{json.dumps(data, separators=(',', ':'))});\n")
        first = batches[0]
        saes.append(
            {
                "k": k,
                "sae_id": sae_id,
                "neuronpedia_id": manifest["neuronpedia_ids"][sae_id],
                "layer": first["layer"],
                "sae_set": first["sae_set"],
                "n_features": len(data["features"]),
                "alive": sum(1 for f in data["features"] if f["fz"] > 0),
            }
        )
    index = {"suite": manifest["suite"], "dataset": manifest["dataset"], "settings": manifest["settings"], "saes": saes}
    atomic_write_text(out / "data" / "index.js", f"QS_INDEX={json.dumps(index, separators=(',', ':'))};\n")
    assets = files("qwen3_scope.export") / "viewer_assets"
    for name in ASSETS:
        atomic_write_text(out / name, (assets / name).read_text())
    logger.info("viewer written to %s (%d SAEs)", out / "index.html", len(saes))
    return out / "index.html"


def viewer_link(export_dir: str | Path, sae_id: str, feature: int) -> str:
    """Relative link (from the export folder) that opens one feature in the viewer."""
    manifest = read_manifest(export_dir)
    return f"viewer/index.html#sae={manifest['sae_ids'].index(sae_id)}&feature={int(feature)}"

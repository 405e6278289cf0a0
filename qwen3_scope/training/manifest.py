"""A suite's manifest (`manifest.json`): what was trained, how, and how far it got, as one typed object.

Why one object: the trainer, the rank records of a distributed run and the failure guards all change the
manifest while a suite trains, and evaluation, releases and export read it afterwards. `SuiteManifest` is the
only writer (`write`, atomic) and the one reader that checks the file (`read`: missing, empty, truncated or not a
qwen3-scope suite is a clear error naming the file). The JSON on disk is `to_dict()`, format
`qwen3-scope-suite/1`, unchanged from the dict the trainer used to write; readers that still take the dict use
`to_dict()` / `from_dict()`.

Group records (`groups`, one dict per planned group: index, sae_ids, status, timings) and SAE entries (`saes`,
by SAE id: site, layer, hook, sizes, status) stay plain JSON records; the methods below are the edits the
trainer and the ranks make to them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3_scope.core.errors import CorruptFileError, MissingFileError
from qwen3_scope.core.io import atomic_write_json
from qwen3_scope.naming import SUITE_MANIFEST_FILENAME, SUITE_METRICS_FILENAME

FORMAT = "qwen3-scope-suite/1"
_OPTIONAL = ("parallel", "checkpoint_every_steps")  # absent from manifests written before they existed


@dataclass
class SuiteManifest:
    """The fields of `manifest.json` (see `training.suite` for the suite layout)."""

    suite: str
    status: str  # running, interrupted, complete
    created: str
    updated: str
    config: dict[str, Any] | None  # the SuiteTrainingConfig, portable (no path of this machine)
    model: dict[str, Any]
    model_key: str
    recipe: dict[str, Any]  # SuiteJobs.to_dict(): what a resume compares
    training_tokens: int
    data: dict[str, Any]
    plan: dict[str, Any]
    versions: dict[str, Any]
    groups: list[dict[str, Any]]
    saes: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    parallel: dict[str, Any] | None = None  # ParallelPlan.to_dict() of the run that started the suite
    checkpoint_every_steps: int | None = None
    format: str = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a newer writer, kept as they were read

    # ------------------------------------------------------------------ files
    @staticmethod
    def path(suite_dir: str | Path) -> Path:
        return Path(suite_dir) / SUITE_MANIFEST_FILENAME

    @classmethod
    def exists(cls, suite_dir: str | Path) -> bool:
        return cls.path(suite_dir).is_file()

    @classmethod
    def read(cls, suite_dir: str | Path) -> SuiteManifest:
        """The manifest of the suite in `suite_dir`; MissingFileError / CorruptFileError naming the file."""
        file = cls.path(suite_dir)
        if not file.is_file():
            raise MissingFileError(
                f"{file} does not exist: {suite_dir} is not a suite directory (train one with `qwen3-scope train`)."
            )
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise CorruptFileError(f"cannot read suite manifest {file}: {err}.") from err
        if not text.strip():
            raise CorruptFileError(
                f"suite manifest {file} is empty; the suite cannot be read or resumed (train it again to another --out)."
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CorruptFileError(
                f"suite manifest {file} is not valid JSON ({err}); it may be truncated. Train the suite again to "
                "another --out."
            ) from err
        return cls.from_dict(data, source=file)

    @classmethod
    def find(cls, suite_dir: str | Path) -> SuiteManifest | None:
        """The manifest in `suite_dir`, or None when there is none yet (a corrupt one is an error)."""
        return cls.read(suite_dir) if cls.exists(suite_dir) else None

    def write(self, suite_dir: str | Path) -> Path:
        """Write `manifest.json` atomically (a reader or a resumed run never sees half of it)."""
        return atomic_write_json(self.path(suite_dir), self.to_dict())

    def write_metrics(self, suite_dir: str | Path) -> Path:
        """`metrics.json`, {sae_id: metrics}, beside the manifest (the registry reads it)."""
        return atomic_write_json(Path(suite_dir) / SUITE_METRICS_FILENAME, self.metrics)

    # ------------------------------------------------------------------ dicts
    def to_dict(self) -> dict[str, Any]:
        """The JSON of `manifest.json` (format qwen3-scope-suite/1)."""
        out: dict[str, Any] = {"format": self.format}
        for f in dataclasses.fields(self):
            if f.name in ("format", "extra"):
                continue
            value = getattr(self, f.name)
            if f.name in _OPTIONAL and value is None:
                continue
            out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> SuiteManifest:
        """A manifest from its JSON; `source` names the file in errors."""
        where = f"suite manifest {source}" if source is not None else "suite manifest"
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CorruptFileError(f"{where} is not a qwen3-scope suite (format {found!r}, expected {FORMAT!r}).")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise CorruptFileError(f"{where} lacks {', '.join(missing)}; it was not written by qwen3-scope train.")
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    # ------------------------------------------------------------------ edits
    def group(self, index: int) -> dict[str, Any]:
        """The record of planned group `index`."""
        return self.groups[index]

    def done_groups(self) -> set[int]:
        return {g["index"] for g in self.groups if g["status"] == "done"}

    def finish_sae(self, sae_id: str, metrics: dict[str, Any]) -> None:
        self.saes[sae_id]["status"] = "done"
        self.metrics[sae_id] = metrics

    def rank_record(self, indices: set[int]) -> dict[str, Any]:
        """The finished and running groups among `indices`, their SAEs' status and metrics (a rank's record)."""
        records = [g for g in self.groups if g["index"] in indices and g["status"] != "pending"]
        ids = [i for g in records for i in g["sae_ids"]]
        return {
            "groups": records,
            "saes": {i: self.saes[i]["status"] for i in ids},
            "metrics": {i: self.metrics[i] for i in ids if i in self.metrics},
        }

    def merge_rank_record(self, record: dict[str, Any]) -> None:
        """Fold another rank's record in (a finished group is never taken back to unfinished)."""
        by_index = {g["index"]: g for g in self.groups}
        for group in record.get("groups", []):
            old = by_index.get(group["index"])
            if old is None or old.get("sae_ids") != group.get("sae_ids"):
                continue  # a record of another grouping (never merged into this plan)
            if old["status"] == "done" and group["status"] != "done":
                continue
            old.clear()
            old.update(group)
        for sae_id, status in record.get("saes", {}).items():
            if sae_id in self.saes and self.saes[sae_id]["status"] != "done":
                self.saes[sae_id]["status"] = status
        self.metrics.update(record.get("metrics", {}))

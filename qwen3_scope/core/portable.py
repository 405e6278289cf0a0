"""Names that travel: what saved configs, manifests and release entries record instead of machine paths.

Rule: a saved artifact names its model by the official hub name (`Qwen/Qwen3-4B`), `organism`, or, for a
local checkpoint, the checkpoint's folder name; its dataset by the hub name, the local file/folder name,
or nothing. Absolute paths of the machine that trained it are never written (the local path of a user's
own checkpoint lives only in that user's release file). `machine_paths_in` finds violations.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def portable_model_name(spec: Any) -> str:
    """Official name, `organism`, or a local checkpoint's folder name."""
    name = str(spec.name)
    if not Path(name).is_absolute() and not name.startswith((".", "~")) and name.count("/") <= 1:
        return name
    return Path(name).name


def portable_dataset_name(source: str | os.PathLike | None) -> str | None:
    """Hub dataset name as is; a local file or folder by its own name; None for none."""
    if source is None or str(source) in ("", "organism"):
        return None if source is None or str(source) == "" else "organism"
    text = str(source)
    path = Path(text).expanduser()
    if path.exists() or path.is_absolute() or text.startswith((".", "~")):
        return path.resolve().name if path.exists() else path.name
    return text


def machine_paths(extra: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Path prefixes that must not appear in shipped files: this checkout, the home dir, temp dirs."""
    here = Path(__file__).resolve().parents[2]  # the checkout (or install directory) holding qwen3_scope/
    found = {str(here), tempfile.gettempdir(), "/tmp/", str(Path.home()) + "/", *map(str, extra)}
    return sorted(p for p in found if len(p) > 4)


def machine_paths_in(text: str, prefixes: Iterable[str] | None = None) -> list[str]:
    """The machine-path prefixes that occur in `text` (with a little context each)."""
    hits = []
    for prefix in prefixes if prefixes is not None else machine_paths():
        for match in re.finditer(re.escape(prefix), text):
            hits.append(text[max(0, match.start() - 20) : match.end() + 40])
    return hits

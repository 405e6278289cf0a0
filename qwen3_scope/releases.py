"""Pretrained SAE releases in SAELens: `SAE.from_pretrained("qwen3-instruct-sae", "<model>/<site>/layer_<L>")`.

Why: SAELens has no plugin hook for releases. Its directory (`get_pretrained_saes_directory`) is a
cached dict read from its own yaml, and its loaders are looked up by name; we add our entries and
loaders to both, so every SAELens reader (from_pretrained, config getters, evals' regex search) agrees.

Id scheme: `{model_key}/{site}/layer_{L}` (built by `qwen3_scope.naming.sae_id`), model_key = `organism` or the
lower-cased family name without `Qwen/` (`qwen3-4b`). Sources, by the entry's `path`: `bundled:<dir>` inside the
package; a folder of `repo_id` when `repo_id` is given as a filesystem path (absolute, or starting with `./`,
`../` or `~`: a local folder that merely looks like a hub id never shadows the hub); otherwise a folder of the
hub repo `repo_id` at the release's pinned `revision` (a commit sha: a hub release without one is not
published and is never downloaded). Every `path` must stay inside its repo or package (relative, no `..`).
User release files may add releases but never replace one they do not own (SAELens' own or ours).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
import sae_lens.loading.pretrained_saes_directory as sae_lens_directory
import yaml
from sae_lens.loading import pretrained_sae_loaders
from sae_lens.loading.pretrained_saes_directory import PretrainedSAELookup

from qwen3_scope import naming
from qwen3_scope.core.errors import CorruptFileError, MissingFileError, ReleaseError
from qwen3_scope.core.io import atomic_write_text
from qwen3_scope.model.family import QWEN3_FAMILY, resolve_model
from qwen3_scope.model.sites import (
    UnknownHookError,
    hook_name,
    parse_hook_name,
    parse_transcoder_hooks,
    site_d_in,
    transcoder_hooks,
)
from qwen3_scope.naming import (
    BUNDLED_PREFIX,
    PAPER_LAYOUT,
    PAPER_WIDTH_MULTIPLIER,
    RELEASE,
    SAE_CFG_FILENAME,
    SAE_WEIGHTS_FILENAME,
    TRANSCODER,
    neuronpedia_id,
    parse_release_sae_id,
    training_command_for,
)
from qwen3_scope.saes.loaders import (
    REVISION_OVERRIDE,
    check_release_path,
    is_local_repo,
    qwen3_scope_config_getter,
    qwen3_scope_loader,
    qwen_scope_safe_loader,
    read_sae_cfg,
)

# Names other modules import from here (defined below: naming, saes.loaders).
__all__ = ["BUNDLED_PREFIX", "PAPER_LAYOUT", "RELEASE", "parse_release_sae_id", "training_command_for"]

# Where this project's own published suites will live; nothing is published there yet (see README), so the
# shipped release pins no revision and its hub ids raise "train it yourself" without touching the network.
# Publishing = uploading, then `python -m qwen3_scope.releases --revision <commit sha>` to pin that commit.
HUB_REPO = f"qwen3-scope/{RELEASE}"
HUB_REVISION: str | None = None
_REVISION = re.compile(r"^[0-9a-f]{40}$")
CONVERSION_FUNC = "qwen3_scope"


def release_sae_id(model: str, site: str, layer: int) -> str:
    return naming.sae_id(site, layer, resolve_model(model).key)


def _entry(sae_id: str, path: str, d_sae: int, l0: float | None = None, ev: float | None = None) -> dict[str, Any]:
    key, site, layer = parse_release_sae_id(sae_id)
    variant = naming.sae_variant(sae_id.removeprefix(BUNDLED_PREFIX))
    entry: dict[str, Any] = {
        "id": sae_id,
        "path": path,
        "neuronpedia": neuronpedia_id(key, site, layer, d_sae, variant),
    }
    if l0 is not None:
        entry["l0"] = round(float(l0), 3)
    if ev is not None:
        entry["variance_explained"] = round(float(ev), 4)
    return entry


def paper_entries() -> list[dict[str, Any]]:
    """The paper's layout: 1.7B and 4B every layer x 3 sites; 8B resid_post layers 0-8."""
    entries = []
    for model, (sites, layers) in PAPER_LAYOUT.items():
        spec = QWEN3_FAMILY[model]
        for layer in layers or range(spec.n_layers):
            for site in sites:
                sae_id = release_sae_id(model, site, layer)
                entries.append(_entry(sae_id, sae_id, PAPER_WIDTH_MULTIPLIER * site_d_in(spec, site)))
    return entries


def release_file() -> Path:
    """The release yaml shipped inside the package (the repo's top-level pretrained_saes.yaml)."""
    return Path(str(files("qwen3_scope"))) / "pretrained_saes.yaml"


def user_release_file() -> Path:
    """Where `register_suite` records a user's own suites (override with QWEN3_SCOPE_RELEASES)."""
    default = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "qwen3_scope" / "releases.yaml"
    return Path(os.environ.get("QWEN3_SCOPE_RELEASES", default))


_RELEASE_FILE_SCHEMA = "a YAML mapping of release name -> entry (SAELens' pretrained_saes.yaml schema)"


def read_release_yaml(path: Path, required: bool = False) -> dict[str, Any]:
    """The releases of a release file. A missing file holds none, unless `required` (a file the user named), when a
    missing file or one without releases is an error; a file that is not YAML, or not a mapping, always is."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise MissingFileError(f"release file {path} does not exist; expected {_RELEASE_FILE_SCHEMA}.")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise CorruptFileError(
            f"{path} is not valid YAML ({str(err).splitlines()[0] if str(err) else type(err).__name__}); expected "
            f"{_RELEASE_FILE_SCHEMA}. Fix the file, or re-register the suite with `qwen3-scope releases add`."
        ) from err
    if data is None:
        if required:
            raise CorruptFileError(f"{path} is empty: it defines no release; expected {_RELEASE_FILE_SCHEMA}.")
        return {}
    if not isinstance(data, dict):
        raise ReleaseError(f"{path} is not a release file (expected a mapping of release name -> entry).")
    return data


def _lookup(release: str, value: dict[str, Any], path: Path | None = None) -> PretrainedSAELookup:
    """One yaml release as SAELens' own `PretrainedSAELookup`."""
    where = f"{path}: release {release!r}" if path is not None else f"release {release!r}"
    if not isinstance(value, dict) or any(key not in value for key in ("repo_id", "model", "saes")):
        raise ReleaseError(
            f"{where} needs 'repo_id', 'model' and 'saes' keys (SAELens' pretrained_saes.yaml "
            "schema); fix the entry or re-register the suite with `qwen3-scope releases add`."
        )
    saes = value["saes"]
    if not isinstance(saes, list) or not all(isinstance(e, dict) and "id" in e and "path" in e for e in saes):
        raise ReleaseError(
            f"{where}: 'saes' must be a list of entries with 'id' and 'path' keys (SAELens' pretrained_saes.yaml "
            "schema); fix the entry or re-register the suite with `qwen3-scope releases add`."
        )
    for entry in saes:
        check_release_path(str(entry["path"]), f"{where}, id {entry.get('id')!r}")
    overrides = dict(value.get("config_overrides") or {})
    revision = value.get("revision")
    if revision is not None:
        if not _REVISION.match(str(revision)):
            raise ReleaseError(
                f"{where} has revision {revision!r}; pin a full 40-character commit sha "
                "of the hub repo (a branch or tag can move)."
            )
        overrides[REVISION_OVERRIDE] = str(revision)
    return PretrainedSAELookup(
        release=release,
        repo_id=value["repo_id"],
        model=value["model"],
        conversion_func=value.get("conversion_func"),
        saes_map={s["id"]: str(s["path"]) for s in saes},
        expected_var_explained={s["id"]: s.get("variance_explained", 1.0) for s in saes},
        expected_l0={s["id"]: s.get("l0", 0.0) for s in saes},
        neuronpedia_id={s["id"]: s.get("neuronpedia") for s in saes},
        norm_scaling_factor={s["id"]: s["norm_scaling_factor"] for s in saes if "norm_scaling_factor" in s},
        config_overrides=overrides or None,
    )


def register_loaders() -> None:
    """Our conversion function, and a no-pickle replacement for SAELens' Qwen-Scope loader."""
    pretrained_sae_loaders.NAMED_PRETRAINED_SAE_LOADERS[CONVERSION_FUNC] = qwen3_scope_loader
    pretrained_sae_loaders.NAMED_PRETRAINED_SAE_CONFIG_GETTERS[CONVERSION_FUNC] = qwen3_scope_config_getter
    if "qwen_scope" in pretrained_sae_loaders.NAMED_PRETRAINED_SAE_LOADERS:
        pretrained_sae_loaders.NAMED_PRETRAINED_SAE_LOADERS["qwen_scope"] = qwen_scope_safe_loader


# release name -> the qwen3-scope release file that added it
_OWNERS: dict[str, Path] = {}


def _shadows(release: str, path: Path, directory: dict[str, Any]) -> bool:
    """True when `path` would replace a release it does not own: SAELens' own, or the shipped file's."""
    owner = _OWNERS.get(release)
    if owner is None:
        return release in directory
    shipped = release_file().resolve()
    return owner == shipped and path != shipped


def _add_to_directory(directory: dict[str, Any], path: Path, required: bool = False) -> list[str]:
    releases = read_release_yaml(path, required)
    path = Path(path).resolve()
    for release in releases:
        if _shadows(release, path, directory):
            owner = _OWNERS.get(release)
            where = f"qwen3-scope's shipped release file {owner}" if owner else "SAELens' own pretrained_saes.yaml"
            raise ReleaseError(
                f"{path} defines release {release!r}, which {where} already provides; a release file may not "
                f"replace a release it does not own. Rename it in {path} (e.g. {release}-local)."
            )
    lookups = {release: _lookup(release, value, path) for release, value in releases.items()}  # all or none
    for release, lookup in lookups.items():
        directory[release] = lookup
        _OWNERS[release] = path
    return list(releases)


def register_release_file(path: Path) -> list[str]:
    """Add every release of a yaml file to SAELens' directory; returns the names.

    A release a qwen3-scope file registered before is replaced; SAELens' own releases and the shipped file's
    cannot be (ReleaseError).
    """
    return _add_to_directory(sae_lens_directory.get_pretrained_saes_directory(), path, required=True)


def _install_directory_hook() -> None:
    """Merge our release files into SAELens' directory the first time anything reads it.

    Why lazy: SAELens parses its own 40k-line yaml on the first read (~1.4 s here); forcing that at
    `import qwen3_scope` would make the plugin's import cost noticeable. Every SAELens module that reads
    the directory gets the same wrapped function, so all readers agree.
    """
    original = sae_lens_directory.get_pretrained_saes_directory
    if getattr(original, "qwen3_scope_hook", False):
        return

    @functools.cache
    def get_pretrained_saes_directory() -> dict[str, Any]:
        directory = original()
        for path in (release_file(), user_release_file()):
            _add_to_directory(directory, path)
        return directory

    get_pretrained_saes_directory.qwen3_scope_hook = True  # type: ignore[attr-defined]
    for name, module in list(sys.modules.items()):
        if name.startswith("sae_lens") and getattr(module, "get_pretrained_saes_directory", None) is original:
            setattr(module, "get_pretrained_saes_directory", get_pretrained_saes_directory)  # noqa: B010
    if original.cache_info().currsize:  # already parsed by someone: merging now costs nothing
        get_pretrained_saes_directory()


def pretrained_directory() -> dict[str, Any]:
    """SAELens' pretrained-SAE directory with our releases merged in. Call this rather than importing SAELens'
    `get_pretrained_saes_directory` by name: a module that bound that name before `import qwen3_scope` registered
    holds SAELens' unwrapped function, which never sees our releases."""
    return sae_lens_directory.get_pretrained_saes_directory()


def register_releases() -> None:
    register_loaders()
    _install_directory_hook()


def list_release_saes(pattern: str = ".*") -> pd.DataFrame:
    """Every SAE of qwen3-scope's and the user's release files, one row each, filtered by an id regex.

    l0 / variance_explained are empty where nothing was measured (SAELens itself would show 0 and 1).
    """
    rows = []
    for path in (release_file(), user_release_file()):
        for release, value in read_release_yaml(path).items():
            _lookup(release, value, path)  # a malformed entry: an error naming the file, not a KeyError
            local = is_local_repo(value["repo_id"])
            for entry in value["saes"]:
                if not re.search(pattern, entry["id"]):
                    continue
                key, site, layer = parse_release_sae_id(entry["id"])
                source = "bundled" if str(entry["path"]).startswith(BUNDLED_PREFIX) else ("local" if local else "hub")
                rows.append(
                    dict(
                        release=release,
                        sae_id=entry["id"],
                        model=key,
                        site=site,
                        layer=layer,
                        source=source,
                        l0=entry.get("l0"),
                        variance_explained=entry.get("variance_explained"),
                    )
                )
    return pd.DataFrame(
        rows, columns=["release", "sae_id", "model", "site", "layer", "source", "l0", "variance_explained"]
    )


def _write_yaml(path: Path, data: dict[str, Any], header: str = "") -> None:
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False, width=120))


def release_yaml_header() -> str:
    return (
        "# qwen3-scope pretrained SAE releases, in SAELens' own pretrained_saes.yaml schema.\n"
        "# Ids: <model>/<site>/layer_<L>. `bundled:` paths ship inside the package; other paths are folders of\n"
        f"# repo_id at the pinned `revision` (a commit sha). {HUB_REPO} is where this project's published suites\n"
        "# will live: nothing is published yet (no revision), so those ids raise an error that says how to train\n"
        "# them. Regenerate: python -m qwen3_scope.releases [--revision SHA]\n"
    )


def write_release_file(path: Path, bundled: list[dict[str, Any]], revision: str | None = HUB_REVISION) -> Path:
    """The shipped yaml: bundled organism SAEs first, then the paper's layout for the real models."""
    release: dict[str, Any] = {
        "repo_id": HUB_REPO,
        "model": "Qwen3 instruct family (model named in each id)",
        "conversion_func": CONVERSION_FUNC,
    }
    if revision is not None:
        release["revision"] = revision
    release.update({"config_overrides": {"prepend_bos": False}, "saes": bundled + paper_entries()})
    data = {RELEASE: release}
    _write_yaml(path, data, release_yaml_header())
    return path


def suite_entries(suite_dir: Path, metrics: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Release entries for every SAE directory (cfg.json + sae_weights.safetensors) below a suite dir."""
    entries = []
    for relative, folder in naming.sae_folders(suite_dir).items():
        cfg_file = folder / SAE_CFG_FILENAME
        cfg = read_sae_cfg(cfg_file)
        metadata = cfg.get("metadata")
        if not isinstance(metadata, dict) or not metadata.get("hook_name") or not metadata.get("model_name"):
            raise CorruptFileError(
                f"{cfg_file} has no metadata.hook_name/model_name; it is not a SAELens 6 SAE config. Re-save the SAE "
                "with SAELens 6 (sae.save_model) or re-train it."
            )
        try:
            if metadata.get("hook_name_out"):  # a transcoder: its (input, output) hooks are one layer's MLP
                layer, site = (
                    parse_transcoder_hooks(str(metadata["hook_name"]), str(metadata["hook_name_out"])),
                    TRANSCODER,
                )
            else:
                layer, site = parse_hook_name(str(metadata["hook_name"]))
        except UnknownHookError as err:
            raise ReleaseError(
                f"{cfg_file}: {err} qwen3-scope releases hold SAEs on Qwen3 site hooks and transcoders of Qwen3 MLPs."
            ) from err
        model_name = metadata.get("qwen3_model") or metadata["model_name"]
        try:
            key = resolve_model(model_name).key
        except ValueError:  # a model this machine cannot see: name it by its last path component
            key = Path(model_name).name.lower()
        registry_id = naming.sae_id(site, layer, key, naming.sae_variant(relative))
        measured = (metrics or {}).get(registry_id) or (metrics or {}).get(relative) or {}
        entries.append(
            _entry(registry_id, relative, int(cfg["d_sae"]), measured.get("l0"), measured.get("variance_explained"))
        )
    if not entries:
        raise MissingFileError(
            f"no SAEs under {suite_dir} (expected folders with {SAE_CFG_FILENAME} and {SAE_WEIGHTS_FILENAME})."
        )
    return entries


def register_suite(
    suite_dir: str | Path,
    release: str | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    release_yaml: Path | None = None,
) -> str:
    """Make a locally trained suite a loadable SAELens release; returns the release name.

    `metrics` maps an id (or the SAE's folder relative to the suite) to measured `l0` and
    `variance_explained` (e.g. from `qwen3-scope eval`); the entries are written atomically to
    `release_yaml` (default: the user release file, read on every `import qwen3_scope`).
    """
    suite_dir = Path(suite_dir).expanduser().resolve()
    if not suite_dir.is_dir():
        raise MissingFileError(f"suite directory {suite_dir} does not exist; train one with `qwen3-scope train`.")
    release = release or f"qwen3-scope-local-{re.sub(r'[^a-z0-9.-]+', '-', suite_dir.name.lower())}"
    entries = suite_entries(suite_dir, metrics)
    target = release_yaml or user_release_file()
    if _shadows(release, Path(target).resolve(), sae_lens_directory.get_pretrained_saes_directory()):
        raise ReleaseError(
            f"release name {release!r} is already taken by {_OWNERS.get(release) or 'SAELens'}; "
            "choose another with --release NAME."
        )
    data = read_release_yaml(target)
    data[release] = {
        "repo_id": str(suite_dir),
        "model": entries[0]["id"].split("/")[0],
        "conversion_func": CONVERSION_FUNC,
        "config_overrides": {"prepend_bos": False},
        "saes": entries,
    }
    _write_yaml(target, data, "# qwen3-scope user releases (written by register_suite / `qwen3-scope releases add`).\n")
    register_release_file(target)
    return release


def hook_for(sae_id: str, backend: str = "hooked") -> str:
    """Hook name an id's SAE reads, in any backend (a transcoder's: its input hook; see `transcoder_hooks_for`)."""
    key, site, layer = parse_release_sae_id(sae_id)
    model = next((n for n, spec in QWEN3_FAMILY.items() if spec.key == key), key)
    if site == TRANSCODER:
        return transcoder_hooks(layer, backend, resolve_model(model))[0]
    return hook_name(site, layer, backend, resolve_model(model))


def transcoder_hooks_for(sae_id: str, backend: str = "hooked") -> tuple[str, str]:
    """(input hook, output hook) of a transcoder id (`organism/transcoder/layer_2`), in any backend."""
    key, site, layer = parse_release_sae_id(sae_id)
    if site != TRANSCODER:
        raise ReleaseError(
            f"{sae_id!r} is not a transcoder id; transcoder ids look like 'qwen3-4b/transcoder/layer_3'."
        )
    model = next((n for n, spec in QWEN3_FAMILY.items() if spec.key == key), key)
    return transcoder_hooks(layer, backend, resolve_model(model))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Regenerate the shipped release yaml (bundled ids + paper layout).")
    parser.add_argument("--revision", default=HUB_REVISION, help=f"commit sha of {HUB_REPO} to pin once published")
    args = parser.parse_args()
    shipped = read_release_yaml(release_file()).get(RELEASE, {})
    existing = shipped.get("saes", [])
    write_release_file(
        release_file().resolve(),
        [e for e in existing if str(e["path"]).startswith(BUNDLED_PREFIX)],
        args.revision or shipped.get("revision"),
    )
    print(f"wrote {release_file().resolve()}")

"""Names of trained SAEs: one scheme for suite folders, SAE ids and registry ids.

Why one module: the suite runner writes SAEs under these names, and the registry (`SAE.from_pretrained`)
and every reader of a suite parse them back; if two places formatted ids, they would drift.

Scheme:
- suite name  ``{model_key}-{recipe_label}-{width}``, e.g. ``qwen3-8b-paper-65k``,
  ``qwen3-1.7b-qwen-scope-k50-32k``, ``organism-paper-2k`` (``model_key`` is `Qwen3ModelSpec.key`;
  widths are written like Gemma Scope's: floor(d_sae / 1000) + "k", so 65,536 -> ``65k``).
- SAE id inside a suite ``{site}/layer_{L}``, e.g. ``mlp_out/layer_12``; it is also the SAE's folder,
  relative to the suite directory.
- registry id ``{model_key}/{site}/layer_{L}``, e.g. ``qwen3-4b/mlp_out/layer_12`` (what
  `qwen3_scope.releases` registers for `SAE.from_pretrained`).
- a sparsity sweep adds SAEs of other sparsities at the same (layer, site), with a variant suffix:
  ``mlp_out/layer_3/l0_16`` (JumpReLU target L0 16) or ``resid_post/layer_3/k_32`` (TopK k 32); the
  unsuffixed id is the suite's default sparsity.
- a transcoder (MLP input -> MLP output of one layer) takes ``transcoder`` (`TRANSCODER`) in the site's place:
  ``transcoder/layer_2`` in a suite, ``organism/transcoder/layer_2`` in a release, ``transcoder/layer_3/l0_16`` in a
  sweep; its Neuronpedia id is ``{model}/{layer}-qwen3scope-transcoder-{width}`` (Neuronpedia's Qwen3 transcoders
  are ``qwen3-4b/{layer}-transcoder-hp``).
"""

from __future__ import annotations

import re
from pathlib import Path

from qwen3_scope.core.errors import ConfigError, ReleaseError
from qwen3_scope.model.family import QWEN3_FAMILY
from qwen3_scope.model.sites import PAPER_SITES, check_site

# The release every bundled and paper SAE is registered under: SAE.from_pretrained(RELEASE, "<model>/<site>/layer_<L>").
RELEASE = "qwen3-instruct-sae"

# File names. The SAE files are SAELens' own (`sae_lens.constants`; tests/test_compat.py checks they still agree):
# they are spelled here so that naming stays importable without SAELens (the CLI answers without importing it).
SAE_CFG_FILENAME = "cfg.json"
SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"
RUNNER_CFG_FILENAME = "runner_cfg.json"
SUITE_MANIFEST_FILENAME = "manifest.json"  # a suite's (and an export's) manifest
SUITE_METRICS_FILENAME = "metrics.json"  # {sae_id: metrics} beside a suite's manifest

# The id component of a transcoder, in the place of a site (`transcoder/layer_2`): one per layer, MLP in -> MLP out.
TRANSCODER = "transcoder"

# A release entry's `path` with this prefix names a folder shipped inside the package (`bundled:<dir>`).
BUNDLED_PREFIX = "bundled:"

# The paper's suites, as the shipped release lists them (`releases.paper_entries`) and the `paper` recipe trains
# them: model -> (sites, layers; None = every layer), each SAE PAPER_WIDTH_MULTIPLIER x its site's width.
# Kept here, below `training`, so that the release layer does not import the recipes.
PAPER_WIDTH_MULTIPLIER = 16
PAPER_LAYOUT: dict[str, tuple[tuple[str, ...], tuple[int, ...] | None]] = {
    "Qwen/Qwen3-1.7B": (PAPER_SITES, None),
    "Qwen/Qwen3-4B": (PAPER_SITES, None),
    "Qwen/Qwen3-8B": (("resid_post",), tuple(range(9))),
}

_SAE_ID = re.compile(
    r"^(?:(?P<model>[^/]+)/)?(?P<site>[a-z_]+)/layer_(?P<layer>\d+)(?:/(?P<variant>(?:l0|k|l1)_\d+(?:\.\d+)?))?$"
)


def check_id_site(site: str) -> str:
    """A site, or `TRANSCODER`: what may stand in the site's place of an id."""
    return site if site == TRANSCODER else check_site(site)


def is_transcoder_id(text: str) -> bool:
    """Whether an id (suite, release or `bundled:` form) names a transcoder."""
    match = _SAE_ID.match(text.removeprefix(BUNDLED_PREFIX))
    return match is not None and match["site"] == TRANSCODER


def width_label(d_sae: int) -> str:
    """65_536 -> '65k', 32_768 -> '32k', 1_048_576 -> '1m', 512 -> '512' (Gemma Scope's convention)."""
    if d_sae >= 1_000_000:
        return f"{d_sae // 1_000_000}m"
    if d_sae >= 1_000:
        return f"{d_sae // 1_000}k"
    return str(d_sae)


def sae_id(site: str, layer: int, model_key: str | None = None, variant: str | None = None) -> str:
    """`resid_post/layer_3`, or `qwen3-4b/resid_post/layer_3` with a model key (the registry id); a sweep's
    `variant` (`sparsity_variant`) is appended: `resid_post/layer_3/l0_16`. `site` may be `TRANSCODER`."""
    check_id_site(site)
    if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
        raise ConfigError(f"layer must be a non-negative int, got {layer!r}.")
    base = f"{model_key}/{site}/layer_{layer}" if model_key else f"{site}/layer_{layer}"
    return f"{base}/{variant}" if variant else base


def sparsity_variant(target_l0: float | None = None, k: int | None = None, l1: float | None = None) -> str:
    """The id suffix of a sweep SAE: `l0_16` (JumpReLU target L0), `k_32` (TopK k, matching pursuit's iterations) or
    `l1_5` (an L1 coefficient)."""
    if sum(v is not None for v in (target_l0, k, l1)) != 1:
        raise ConfigError("a sparsity variant is a target L0, a k or an L1 coefficient, exactly one of them.")
    if l1 is not None:
        return f"l1_{float(l1):g}"
    return f"k_{int(k)}" if k is not None else f"l0_{float(target_l0):g}"  # type: ignore[arg-type]


def _match(text: str) -> re.Match[str]:
    match = _SAE_ID.match(text)
    if match is None:
        raise ConfigError(
            f"{text!r} is not a qwen3-scope SAE id; ids look like 'resid_post/layer_3' (inside a suite), "
            "'qwen3-4b/resid_post/layer_3' (registry), 'qwen3-4b/resid_post/layer_3/l0_16' (a sparsity sweep) or "
            "'qwen3-4b/transcoder/layer_3' (a transcoder)."
        )
    return match


def parse_sae_id(text: str) -> tuple[str | None, str, int]:
    """Inverse of `sae_id`: -> (model_key or None, site, layer); `sae_variant` gives a sweep's suffix. A transcoder's
    site is `TRANSCODER`."""
    match = _match(text)
    return match["model"], check_id_site(match["site"]), int(match["layer"])


def parse_release_sae_id(text: str) -> tuple[str, str, int]:
    """A release id (`qwen3-4b/mlp_out/layer_12`, or a `bundled:` path) -> ("qwen3-4b", "mlp_out", 12)."""
    key, site, layer = parse_sae_id(text.removeprefix(BUNDLED_PREFIX))
    if key is None:
        raise ReleaseError(f"{text!r} is not a qwen3-scope release id; ids look like 'qwen3-4b/mlp_out/layer_12'.")
    return key, site, layer


def training_command_for(text: str) -> str:
    """The command that trains the SAE behind a release id (what 'weights unavailable' errors suggest)."""
    try:
        key, site, layer = parse_release_sae_id(text)
    except ValueError:
        return "qwen3-scope train --help"
    model = next((n for n, spec in QWEN3_FAMILY.items() if spec.key == key), key)
    if site == TRANSCODER:
        return f"qwen3-scope train --model {model} --recipe paper --transcoders --layers {layer} --out suites/{key}"
    return f"qwen3-scope train --model {model} --recipe paper --sites {site} --layers {layer} --out suites/{key}"


def sae_variant(text: str) -> str | None:
    """The sparsity-sweep suffix of an id or suite folder (`l0_16`, `k_32`); None for a suite's default SAE and for
    names outside this scheme (another release's ids, a user's own folder names)."""
    match = _SAE_ID.match(text)
    return match["variant"] if match else None


def suite_name(model_key: str, recipe_label: str, d_sae: int) -> str:
    """`qwen3-8b-paper-65k`: the model, the recipe (with its variant, e.g. `qwen-scope-k50`) and the width."""
    return f"{model_key}-{recipe_label}-{width_label(d_sae)}"


def sae_folders(suite_dir: str | Path) -> dict[str, Path]:
    """The one suite scanner: every finished SAE folder (SAELens' cfg.json + sae_weights.safetensors) below
    `suite_dir`, by id (the folder relative to the suite, `mlp_out/layer_3`), sorted. Hidden folders
    (`.checkpoints/`, `.staging/`: unfinished training state) are skipped."""
    root = Path(suite_dir)
    found = {}
    for cfg in sorted(root.rglob(SAE_CFG_FILENAME)):
        relative = cfg.parent.relative_to(root)
        if (cfg.parent / SAE_WEIGHTS_FILENAME).is_file() and not any(p.startswith(".") for p in relative.parts):
            found[relative.as_posix()] = cfg.parent
    return found


def neuronpedia_set(site: str, d_sae: int, variant: str | None = None) -> str:
    """Neuronpedia source-set name of a qwen3-scope SAE: `qwen3scope-mlpout-40k` (site without '_', width label),
    with a sweep variant `qwen3scope-mlpout-40k-l0-16`; a transcoder's: `qwen3scope-transcoder-40k`."""
    name = f"qwen3scope-{check_id_site(site).replace('_', '')}-{width_label(d_sae)}"
    return f"{name}-{variant.replace('_', '-')}" if variant else name


def neuronpedia_id(model_key: str, site: str, layer: int, d_sae: int, variant: str | None = None) -> str:
    """Neuronpedia id `{model}/{layer}-{set}`, e.g. `qwen3-4b/12-qwen3scope-mlpout-40k` (Neuronpedia's convention, as
    `gemma-2-2b/20-gemmascope-res-16k`). The one place these ids are made: release entries, exported cfg.json
    metadata (`neuronpedia_id`) and dashboard exports all call it."""
    return f"{model_key}/{layer}-{neuronpedia_set(site, d_sae, variant)}"

"""`qwen3-scope bench`: SAEBench 0.6's own evals on a Qwen3 suite, with its own result JSON.

Needs the `bench` extra (`pip install 'qwen3-scope[bench]'`): importing this module imports `sae_bench` through
`saebench_compat` and raises `BenchExtraMissingError` (with the install command) without it.

What runs, per SAE (SAELens SAE objects handed to SAEBench as "custom" SAEs, the way its README shows):

- `core`: SAEBench's `run_evals` (reconstruction, CE/KL, sparsity, feature density, weight metrics) on the same
  held-out tokens as `qwen3-scope eval` for the organism (`suite_eval.held_out_tokens`), SAEBench's default
  `Skylion007/openwebtext` otherwise; written by its `save_single_eval_result`;
- `sparse_probing`, `scr`, `tpp`, `absorption`, `meta_structure`: each eval's `run_eval`, unchanged, inside
  `saebench_compat.bench_session` (our model, offline data, a private working directory).

Absorption stops, as SAEBench does, when fewer than `absorption_min_letters` letters have a first-letter probe with
F1 above 0.6 (the model cannot spell); bench then reports the probe F1s instead of an absorption score.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from sae_lens import TopKSAE, TopKSAEConfig

from qwen3_scope.core.errors import ConfigError, CorruptFileError, Qwen3ScopeError
from qwen3_scope.core.io import atomic_write_json, atomic_write_text
from qwen3_scope.evaluation import saebench_compat as compat
from qwen3_scope.evaluation.bench_config import SUPERVISED_EVALS, BenchConfig
from qwen3_scope.evaluation.bench_table import BASELINE, BENCH_FACTS, BENCH_TABLE
from qwen3_scope.evaluation.config import SuiteEvalConfig
from qwen3_scope.evaluation.plots import plot_bench
from qwen3_scope.evaluation.reconstruction import is_transcoder
from qwen3_scope.evaluation.saebench_data import (
    BenchData,
    MissingLabelsError,
    check_supervised,
    file_data,
    organism_data,
)
from qwen3_scope.evaluation.suite_eval import (
    SuiteEntry,
    check_suite,
    entries_from_directory,
    entries_from_release,
    held_out_tokens,
    load_suite_model,
)
from qwen3_scope.model.family import ORGANISM_DIR
from qwen3_scope.model.loading import model_spec
from qwen3_scope.model.sites import parse_hook_name

RESULT_DIRS = {e: e for e in ("core", "sparse_probing", "scr", "tpp", "absorption", "meta_structure")}


class HubDataUnavailableError(Qwen3ScopeError):
    """SAEBench's hub dataset could not be read (offline, or not reachable)."""


@dataclass
class BenchResult:
    """What a bench run wrote: SAEBench's JSON files by eval, the summary table, and notes (e.g. absorption)."""

    out_dir: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    entries: dict[str, SuiteEntry] = field(default_factory=dict)  # by the label SAEBench records


# ---- data ------------------------------------------------------------------------------------------------------


def is_organism(model: Any) -> bool:
    source = Path(model_spec(model).source)
    return source.is_dir() and source.resolve() == ORGANISM_DIR.resolve()


def resolve_data(cfg: BenchConfig, model: Any) -> BenchData:
    """The labelled data of the supervised evals: see `BenchConfig.data`."""
    organism = is_organism(model)
    if cfg.data == "hub" or (cfg.data == "auto" and not organism):
        return BenchData("SAEBench's hub datasets", hub=True)
    if cfg.data in ("organism", "auto"):
        if not organism:
            raise MissingLabelsError(
                f"--data organism needs the model organism, but the suite's model is {model_spec(model).name}; use "
                "--data hub (SAEBench's datasets) or --data FILE (your labelled rows)."
            )
        return organism_data(model.tokenizer, cfg.train_size, cfg.test_size, cfg.seed)
    return file_data(cfg.data, cfg.train_size, cfg.test_size, cfg.seed, cfg.scr_column)


def _hub_guard(eval_name: str, names: list[str], fn: Any) -> Any:
    try:
        return fn()
    except (ConnectionError, OSError) as err:  # datasets' offline / unreachable errors are OSError subclasses
        raise HubDataUnavailableError(
            f"SAEBench's {eval_name} eval reads the hub datasets {', '.join(names)}, which cannot be loaded here "
            f"({type(err).__name__}: {err}). Go online (unset HF_HUB_OFFLINE), or give labelled data with --data FILE."
        ) from err


# ---- baselines ------------------------------------------------------------------------------------------------


def random_sae_like(sae: Any, seed: int) -> Any:
    """A TopK SAE of the same width, hook and k (or the SAE's mean L0 target) with random unit-norm weights."""
    gen = torch.Generator().manual_seed(seed)
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    k = int(getattr(sae.cfg, "k", 0) or 32)
    rnd = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=min(k, d_sae), metadata=sae.cfg.metadata))
    w = torch.randn(d_sae, d_in, generator=gen)
    w = w / w.norm(dim=1, keepdim=True)
    with torch.no_grad():
        rnd.W_dec.copy_(w)
        rnd.W_enc.copy_(w.T)
        rnd.b_enc.zero_()
        rnd.b_dec.zero_()
    return rnd


def baseline_entries(entries: list[SuiteEntry], model: Any, cfg: BenchConfig, tokens: torch.Tensor) -> list[SuiteEntry]:
    """SAEBench's baselines at each hook the suite reads: identity (the activation itself), PCA (SAEBench's
    `fit_PCA` on the held-out tokens) and a random SAE of the first SAE's width there."""
    out, seen = [], set()
    name = model_spec(model).name
    for e in entries:
        hook = e.sae.cfg.metadata.hook_name
        if hook in seen:
            continue
        seen.add(hook)
        layer, site_name = parse_hook_name(hook, "hooked")
        d_in = e.sae.cfg.d_in
        site = f"{site_name}/layer_{layer}"  # baseline ids: resid_post/layer_3/identity
        identity = compat.IdentitySAE(d_in, name, layer, torch.device("cpu"), torch.float32, hook_name=hook)
        pca = compat.PCASAE(d_in, name, layer, torch.device("cpu"), torch.float32, hook_name=hook)
        pca.cfg.context_size = cfg.context_size
        pca = compat.fit_PCA(pca, model, tokens, cfg.llm_batch_size, pca_batch_size=max(tokens.numel() // 2, d_in + 1))
        out += [
            SuiteEntry(f"{site}/identity", identity, source=BASELINE),
            SuiteEntry(f"{site}/pca", pca, source=BASELINE),
            SuiteEntry(f"{site}/random", random_sae_like(e.sae, cfg.seed), source=BASELINE),
        ]
    return out


# ---- the evals ------------------------------------------------------------------------------------------------


def _label(entry: SuiteEntry) -> str:
    return f"{entry.source or 'suite'}/{entry.sae_id}".replace("/", "__")


def _run_core(entries: list[SuiteEntry], model: Any, cfg: BenchConfig, out: Path, data: BenchData) -> list[Path]:
    eval_cfg = SuiteEvalConfig(
        n_batches=cfg.core_batches,
        batch_size_prompts=cfg.core_batch_size,
        context_size=cfg.context_size,
        device=cfg.device,
        dtype=cfg.dtype,
    )
    tok = model.tokenizer
    ignore = {tok.pad_token_id, tok.eos_token_id, tok.bos_token_id}
    paths = []
    for entry in entries:
        sae_id, sae, _ = compat.core_main.general_utils.load_and_format_sae(_label(entry), entry.sae, cfg.device)
        core_cfg = compat.core_main.CoreEvalConfig(
            model_name=model_spec(model).name,
            llm_dtype=cfg.dtype,
            batch_size_prompts=cfg.core_batch_size,
            n_eval_reconstruction_batches=cfg.core_batches,
            n_eval_sparsity_variance_batches=cfg.core_batches,
            dataset="Skylion007/openwebtext" if data.hub else data.source,
            context_size=cfg.context_size,
            compute_kl=True,
            compute_ce_loss=True,
            compute_l2_norms=True,
            compute_sparsity_metrics=True,
            compute_variance_metrics=True,
            compute_featurewise_density_statistics=True,
            compute_featurewise_weight_based_metrics=True,
            exclude_special_tokens_from_reconstruction=True,
        )
        if data.hub:
            store = _hub_guard(
                "core",
                [core_cfg.dataset],
                lambda sae=sae, core_cfg=core_cfg: compat.core_main.ActivationsStore.from_sae(
                    model, sae, context_size=cfg.context_size, dataset=core_cfg.dataset
                ),
            )
        else:
            store, _ = held_out_tokens(model, eval_cfg)
        scalar, features = compat.core_main.run_evals(sae, store, model, core_cfg, ignore_tokens=ignore)
        scalar["misc_metrics"] = compat.core_main.calculate_misc_metrics(features)
        result = compat.core_main.replace_nans_with_negative_one(
            {
                "sae_set": entry.source or "suite",
                "sae_id": entry.sae_id,
                "eval_cfg": core_cfg,
                "metrics": scalar,
                "feature_metrics": features,
            }
        )
        path = out / f"{_label(entry)}_eval_results.json"
        compat.core_main.save_single_eval_result(
            result, compat.core_main.get_eval_uuid(), compat.SAEBENCH_VERSION, compat.PROVENANCE, str(path), sae
        )
        paths.append(path)
    return paths


def _selected(entries: list[SuiteEntry]) -> list[tuple[str, Any]]:
    return [(_label(e), e.sae) for e in entries]


def _common(cfg: BenchConfig, model: Any) -> dict[str, Any]:
    return dict(model_name=model_spec(model).name, llm_dtype=cfg.dtype, random_seed=cfg.seed)


def _run_supervised(
    name: str, entries: list[SuiteEntry], model: Any, cfg: BenchConfig, out: Path, data: BenchData, work: Path
) -> None:
    widths = min(e.sae.cfg.d_sae for e in entries)
    if name == "sparse_probing":
        mod = compat.sparse_main
        ec = mod.SparseProbingEvalConfig(
            **_common(cfg, model),
            probe_train_set_size=cfg.train_size,
            probe_test_set_size=cfg.test_size,
            context_length=cfg.context_size,
            sae_batch_size=cfg.sae_batch_size,
            llm_batch_size=cfg.llm_batch_size,
            k_values=list(cfg.k_values),
        )
        if not data.hub:
            ec.dataset_names = [s.name for s in data.probe_sets]
        _run_eval(name, mod, ec, entries, cfg, out, work)
        return
    mod = compat.scr_main
    scr = name == "scr"
    ec = mod.ScrAndTppEvalConfig(
        **_common(cfg, model),
        perform_scr=scr,
        train_set_size=cfg.train_size,
        test_set_size=cfg.test_size,
        context_length=cfg.context_size,
        sae_batch_size=cfg.sae_batch_size,
        llm_batch_size=cfg.llm_batch_size,
        probe_epochs=cfg.probe_epochs,
        early_stopping_patience=cfg.probe_epochs,
        n_values=[n for n in cfg.n_values if n <= widths] or [widths],
    )
    if not data.hub:
        if scr:
            ec.dataset_names = [s.name for s in data.spurious_sets]
            ec.column1_vals_lookup = {s.name: s.column1_pairs for s in data.spurious_sets}
        else:
            ec.dataset_names = [s.name for s in data.probe_sets]
    _run_eval(name, mod, ec, entries, cfg, out.parent, work)  # run_eval appends the eval type (scr / tpp) itself


def _run_eval(name: str, mod: Any, ec: Any, entries: list[SuiteEntry], cfg: BenchConfig, out: Path, work: Path) -> None:
    """SAEBench's `run_eval` of a supervised eval, its hub datasets guarded (`_hub_guard`)."""

    def run() -> Any:
        return mod.run_eval(
            ec, _selected(entries), cfg.device, str(out), force_rerun=True, artifacts_path=str(work / "artifacts")
        )

    _hub_guard(name, list(ec.dataset_names), run)


def _run_absorption(
    entries: list[SuiteEntry], model: Any, cfg: BenchConfig, out: Path, work: Path
) -> tuple[list[Path], str]:
    mod = compat.absorption_main
    pos = compat.first_letter_token_pos(model.tokenizer)
    ec = mod.AbsorptionEvalConfig(
        **_common(cfg, model),
        prompt_token_pos=pos,
        llm_batch_size=cfg.llm_batch_size,
        max_k_value=cfg.absorption_max_k,
        min_feats_for_eval=cfg.absorption_min_letters,
        k_sparse_probe_num_epochs=cfg.absorption_probe_epochs,
    )
    notes: dict[str, list[str]] = {}  # note -> the SAEs it applies to
    # hook -> the model's first-letter probes there, once they showed it cannot spell (SAEBench would train the
    # same probes again for every SAE of the layer, baselines included, to reach the same verdict)
    cannot_spell: dict[str, tuple[pd.DataFrame, str]] = {}
    for entry in entries:
        hook = entry.sae.cfg.metadata.hook_name
        if not re.fullmatch(r"blocks\.\d+\.hook_resid_post", hook):
            na = f"not applicable: SAEBench's absorption probes blocks.L.hook_resid_post, not {hook}"
            notes.setdefault(na, []).append(entry.sae_id)
            continue
        if hook in cannot_spell:  # the first-letter probes are the model's, not the SAE's: the same verdict
            f1, note = cannot_spell[hook]
        else:
            mod.run_eval(ec, [(_label(entry), entry.sae)], cfg.device, str(out), force_rerun=True)
            written = out / f"{_label(entry)}_custom_sae_eval_results.json"
            if written.exists():
                continue
            probe_file = work / "artifacts" / "absorption" / f"{_label(entry)}_custom_sae_k_sparse_probing.json"
            f1 = pd.DataFrame(json.loads(probe_file.read_text())) if probe_file.exists() else pd.DataFrame()
            good = int((f1["f1_probe"] > ec.min_GT_probe_f1).sum()) if "f1_probe" in f1 else 0
            best = float(f1["f1_probe"].max()) if "f1_probe" in f1 else float("nan")
            note = (
                f"not measured at {hook}: the model cannot spell well enough; {good} of 26 first-letter probes reach "
                f"F1 > {ec.min_GT_probe_f1} (SAEBench needs {ec.min_feats_for_eval}), best F1 {best:.2f}"
            )
            cannot_spell[hook] = (f1[[c for c in f1.columns if "sae" not in c]], note)
        atomic_write_json(
            out / f"{_label(entry)}_not_measured.json",
            {"sae_id": entry.sae_id, "reason": note, "first_letter_probe_f1": f1.to_dict("records")},
        )
        notes.setdefault(note, []).append(entry.sae_id)
    return sorted(out.glob("*_eval_results.json")), "; ".join(f"{n} ({', '.join(ids)})" for n, ids in notes.items())


def _run_meta(entries: list[SuiteEntry], cfg: BenchConfig, out: Path) -> None:
    mod = compat.meta_main
    ec = mod.MetaStructureEvalConfig(
        random_seed=cfg.seed,
        train_steps=cfg.meta_train_steps,
        train_batch_size=cfg.meta_batch_size,
        autocast=cfg.resolved_device.startswith("cuda"),
    )
    mod.run_eval(ec, _selected(entries), cfg.resolved_device, str(out), force_rerun=True)


# ---- the job --------------------------------------------------------------------------------------------------


def load_entries(suite: str | None, release: str | None, ids: str, device: str) -> list[SuiteEntry]:
    if suite:
        return entries_from_directory(suite, ids, device=device)
    if not release:
        raise ConfigError("give --suite DIR or --release NAME.")
    return entries_from_release(release, ids, device=device)


def run_bench(
    cfg: BenchConfig,
    out_dir: str | Path,
    suite: str | None = None,
    release: str | None = None,
    ids: str = ".*",
    model: Any = None,
    entries: list[SuiteEntry] | None = None,
    model_name: str | None = None,
) -> BenchResult:
    """Run `cfg.evals` on the suite; SAEBench's JSON goes to `<out>/<eval type>/`, a summary to `<out>/bench.*`."""
    out = Path(out_dir)
    entries = entries if entries is not None else load_entries(suite, release, ids, cfg.resolved_device)
    if model is None:
        model = load_suite_model(entries, device=cfg.resolved_device, name=model_name, dtype=cfg.dtype)
    backend = "hooked"
    check_suite([e for e in entries if e.source != BASELINE], model, backend)
    # transcoders read one hook and write another; SAEBench's evals splice an SAE's reconstruction back into the
    # hook it reads, so they would measure a transcoder as a (bad) SAE of its input: left out, with a note
    skipped = [e.sae_id for e in entries if is_transcoder(e.sae)]
    entries = [e for e in entries if not is_transcoder(e.sae)]
    if not entries:
        raise ConfigError(
            f"the SAEs chosen ({', '.join(skipped)}) are all transcoders, which SAEBench's SAE evals do not measure "
            "(they splice a reconstruction into the hook an SAE reads); choose SAEs with --ids, and evaluate "
            "transcoders with qwen3-scope eval (replacement model) or qwen3-scope trace."
        )
    for e in entries:
        parse_hook_name(e.sae.cfg.metadata.hook_name, backend)
    data = (
        resolve_data(cfg, model)
        if any(e in SUPERVISED_EVALS for e in cfg.evals)
        else BenchData("none needed", hub=False)
    )
    check_supervised(data, cfg.evals)
    result = BenchResult(out)
    if skipped:
        result.notes["transcoders"] = (
            f"left out {len(skipped)} transcoder(s) ({', '.join(skipped)}): SAEBench's evals splice an SAE's "
            "reconstruction into the hook it reads, which a transcoder does not reconstruct; qwen3-scope eval "
            "measures them as replacement MLPs"
        )
    name = model_spec(model).name
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory(prefix="qwen3-scope-bench-") as tmp:
        work = Path(tmp)
        with compat.bench_session(model, name, data, work):
            if cfg.baselines:  # inside the session: SAEBench's fit_PCA saves into the working directory
                eval_cfg = SuiteEvalConfig(
                    n_batches=cfg.core_batches,
                    batch_size_prompts=cfg.core_batch_size,
                    context_size=cfg.context_size,
                    device=cfg.device,
                    dtype=cfg.dtype,
                )
                tokens, _ = held_out_tokens(model, eval_cfg)
                entries = entries + baseline_entries(entries, model, cfg, tokens.tokens)
            for ev in cfg.evals:
                start = time.perf_counter()
                dest = (out / RESULT_DIRS[ev]).resolve()
                dest.mkdir(parents=True, exist_ok=True)
                if ev == "core":
                    _run_core(entries, model, cfg, dest, data)
                elif ev in SUPERVISED_EVALS:
                    with compat.padding_side(model.tokenizer, "right"), torch.enable_grad():
                        _run_supervised(ev, entries, model, cfg, dest, data, work)
                elif ev == "absorption":
                    with compat.padding_side(model.tokenizer, "left"):
                        _, note = _run_absorption(entries, model, cfg, dest, work)
                    if note:
                        result.notes["absorption"] = note
                else:
                    _run_meta(entries, cfg, dest)
                result.files[ev] = sorted(dest.glob("*_eval_results.json"))
                result.seconds[ev] = round(time.perf_counter() - start, 2)
    result.entries = {_label(e): e for e in entries}
    result.table = summary_table(result)
    write_summary(result, data)
    return result


# ---- results --------------------------------------------------------------------------------------------------

# (eval, JSON path inside eval_result_metrics, column)
HEADLINE = (
    ("core", ("reconstruction_quality", "explained_variance"), "explained_variance"),
    ("core", ("model_performance_preservation", "ce_loss_score"), "ce_loss_score"),
    ("core", ("sparsity", "l0"), "l0"),
    ("sparse_probing", ("sae", "sae_top_1_test_accuracy"), "sparse_probing_top1"),
    ("sparse_probing", ("sae", "sae_top_{n}_test_accuracy"), "sparse_probing"),  # the largest k run
    ("sparse_probing", ("llm", "llm_test_accuracy"), "llm_probe_accuracy"),
    ("scr", ("scr_metrics", "scr_metric_threshold_{n}"), "scr"),
    ("tpp", ("tpp_metrics", "tpp_threshold_{n}_total_metric"), "tpp"),
    ("absorption", ("mean", "mean_absorption_fraction_score"), "absorption"),
    ("meta_structure", ("meta_structure", "decoder_fraction_variance_explained"), "meta_structure_fve"),
)


def _sae_key(data: dict[str, Any]) -> str:
    """The entry label a result belongs to: SAEBench records custom SAEs as (label, "custom_sae")."""
    rel, sid = data.get("sae_lens_release_id") or "", data.get("sae_lens_id") or ""
    return rel if sid == "custom_sae" else f"{rel}/{sid}".replace("/", "__")


def _threshold(metrics: dict[str, Any], template: str, prefer: int | None = 10) -> int:
    """The `n` of `template` to report: `prefer` when the metrics have it, else the largest present."""
    prefix, suffix = template.split("{n}")
    found = [
        int(k[len(prefix) : len(k) - len(suffix)])
        for k in metrics
        if k.startswith(prefix)
        and k.endswith(suffix)
        and k[len(prefix) : len(k) - len(suffix)].isdigit()
        and metrics[k] is not None
    ]
    if prefer is not None and (prefer in found or not found):
        return prefer
    return max(found, default=1)


def summary_table(result: BenchResult) -> pd.DataFrame:
    """One row per SAE (`sae_id` and `source` as `qwen3-scope eval`'s table names them, so the two tables join on
    them), one column per headline metric; SAEBench's JSON is the full record."""
    rows: dict[str, dict[str, Any]] = {}
    for ev, path, column in HEADLINE:
        for file in result.files.get(ev, []):
            data = json.loads(file.read_text())
            value: Any = data["eval_result_metrics"]
            name = column
            for key in path:
                if isinstance(value, dict) and "{n}" in key:  # SCR/TPP: 10 ablated latents, else the most run
                    n = _threshold(value, key, prefer=None if ev == "sparse_probing" else 10)
                    key, name = key.format(n=n), f"{column}_top{n}"
                value = value.get(key) if isinstance(value, dict) else None
            rows.setdefault(_sae_key(data), {})[name] = value
    order = [k for k in result.entries if k in rows] + [k for k in rows if k not in result.entries]
    table = pd.DataFrame.from_dict(rows, orient="index").loc[order]  # the suite's order, then its baselines
    table.insert(0, "sae_id", [result.entries[k].sae_id if k in result.entries else k for k in table.index])
    table.insert(1, "source", [result.entries[k].source if k in result.entries else "" for k in table.index])
    if "absorption" in result.notes and "absorption" not in table:
        hooks = [result.entries[k].sae.cfg.metadata.hook_name if k in result.entries else "" for k in table.index]
        table["absorption"] = [
            "not measured (cannot spell)" if re.fullmatch(r"blocks\.\d+\.hook_resid_post", h) else "not applicable"
            for h in hooks
        ]
    return table.reset_index(drop=True)


def write_summary(result: BenchResult, data: BenchData) -> None:
    lines = [
        "# SAEBench results",
        "",
        f"SAEBench {compat.SAEBENCH_VERSION}'s own evals; data of the supervised evals: {data.source}.",
        "",
        result.table.to_markdown(index=False) if len(result.table) else "(no results)",
        "",
    ]
    for ev, note in result.notes.items():
        lines.append(f"- {ev}: {note}")
    lines.append("")
    lines.append("Seconds per eval: " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
    result.table.to_csv(result.out_dir / BENCH_TABLE, index=False)
    plot_bench(result.table, result.out_dir / "bench.png")
    atomic_write_text(result.out_dir / "bench.md", "\n".join(lines) + "\n")
    atomic_write_json(
        result.out_dir / BENCH_FACTS,
        {
            "files": {k: [p.name for p in v] for k, v in result.files.items()},
            "notes": result.notes,
            "seconds": result.seconds,
            "data": data.source,
            "saebench": compat.PROVENANCE,
        },
    )


def validate_results(out_dir: str | Path) -> dict[str, int]:
    """Construct SAEBench's own output class from every result JSON under `out_dir`; returns counts per eval."""
    counts: dict[str, int] = {}
    for ev, (cls, type_id) in compat.OUTPUT_CLASSES.items():
        for file in sorted((Path(out_dir) / ev).glob("*_eval_results.json")):
            data = json.loads(file.read_text())
            if data["eval_type_id"] != type_id:
                raise CorruptFileError(f"{file} has eval_type_id {data['eval_type_id']!r}, expected {type_id!r}.")
            cls(**data)  # pydantic validates nested configs and metrics
            counts[ev] = counts.get(ev, 0) + 1
    return counts

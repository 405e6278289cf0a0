"""SAEBench 0.6 extended from the outside for Qwen3 models and offline data (the installed package is never edited).

Importing this module imports `sae_bench`; without the `bench` extra it raises `BenchExtraMissingError`, which says
how to install it. Where SAEBench assumes Gemma/Pythia or the hub, `bench_session` swaps module attributes for the
length of one run and restores them afterwards:

- **the model**: its evals load `HookedTransformer.from_pretrained_no_processing(config.model_name)`; the eval
  modules' `HookedTransformer` name becomes a provider that returns the Qwen3 model qwen3-scope already loaded
  (Qwen3-correct: no BOS, unprocessed weights), so the batch-size / dtype tables (`LLM_NAME_TO_BATCH_SIZE`, Pythia
  and Gemma only) are never consulted: every size is set in the eval configs;
- **data**: `dataset_utils.get_multi_label_train_test_data` and `dataset_creation.get_train_test_data` answer the
  `qwen3-scope/...` dataset names from `saebench_data` (SCR's sets go through SAEBench's own
  `get_spurious_corr_data`), and those names are added to `dataset_info` and SCR's `COLUMN2_VALS_LOOKUP`; every
  other name reaches SAEBench's own hub loaders unchanged;
- **files**: absorption writes probes and tables under the package directory and `./artifacts`; its experiment
  functions get a run-private directory, and the run's working directory is that directory;
- **provenance**: SAEBench records `git rev-parse HEAD` of the working directory as its commit; the record says
  `sae-bench==<version>` instead.

Shape checks: SAEBench's probe code binds jaxtyping dimension names across nested calls (`train_dataset_size` is a
class's size in `train_probe_on_activations` and twice that in `train_sklearn_probe`), which jaxtyping >= 0.3 (what
TransformerLens 3.9 requires) rejects; jaxtyping's runtime checks are off for the length of a run.

Padding (BOS handling): SAEBench tokenizes texts with `padding="max_length"` and runs them without an attention
mask, zeroing the pad positions afterwards; that is exact only with right padding (pads come after the text of a
causal model), so the supervised evals run with the tokenizer padding on the right. Qwen3 has no BOS: nothing is
prepended. Absorption reads the word at a fixed offset from the end of its prompt, which needs left padding, and
its offset is computed from the tokenizer (`first_letter_token_pos`) instead of Gemma's -6.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jaxtyping
import pandas as pd

from qwen3_scope.core.errors import IncompatibleVersionError
from qwen3_scope.evaluation.saebench_data import BenchData

INSTALL_HINT = (
    "install the extra: pip install 'qwen3-scope[bench]' (SAEBench 0.6 needs numpy < 2, datasets < 4 and pyarrow < 26, "
    "so use a separate virtual environment if your main one has numpy 2; on a CPU-only torch install torchvision's "
    "CPU build from the PyTorch index first)"
)


class BenchExtraMissingError(IncompatibleVersionError):
    """`sae_bench` (the `bench` extra) is not installed or cannot be imported here."""


try:
    import sae_bench.evals.absorption.main as absorption_main
    import sae_bench.evals.core.main as core_main
    import sae_bench.evals.meta_structure.main as meta_main
    import sae_bench.evals.scr_and_tpp.dataset_creation as dataset_creation
    import sae_bench.evals.scr_and_tpp.main as scr_main
    import sae_bench.evals.sparse_probing.main as sparse_main
    import sae_bench.sae_bench_utils.dataset_info as dataset_info
    import sae_bench.sae_bench_utils.dataset_utils as dataset_utils
    from sae_bench.custom_saes.identity_sae import IdentitySAE
    from sae_bench.custom_saes.pca_sae import PCASAE, fit_PCA
    from sae_bench.evals.absorption.eval_output import EVAL_TYPE_ID_ABSORPTION, AbsorptionEvalOutput
    from sae_bench.evals.absorption.feature_absorption import FEATURE_ABSORPTION_EXPERIMENT_NAME
    from sae_bench.evals.absorption.k_sparse_probing import SPARSE_PROBING_EXPERIMENT_NAME
    from sae_bench.evals.core.eval_output import EVAL_TYPE_ID_CORE, CoreEvalOutput
    from sae_bench.evals.meta_structure.eval_output import EVAL_TYPE_ID_META_STRUCTURE, MetaStructureEvalOutput
    from sae_bench.evals.scr_and_tpp.eval_output import EVAL_TYPE_ID_SCR, EVAL_TYPE_ID_TPP, ScrEvalOutput, TppEvalOutput
    from sae_bench.evals.sparse_probing.eval_output import EVAL_TYPE_ID_SPARSE_PROBING, SparseProbingEvalOutput
except ImportError as err:  # not installed, or installed beside an incompatible numpy / pyarrow
    raise BenchExtraMissingError(f"SAEBench cannot be imported here ({err}); {INSTALL_HINT}.") from err

SAEBENCH_VERSION = version("sae-bench")
PROVENANCE = f"sae-bench=={SAEBENCH_VERSION}"
# SAEBench's own result class and `eval_type_id` per eval (bench's name): a result JSON validates by constructing
# the class from it
OUTPUT_CLASSES = {
    "core": (CoreEvalOutput, EVAL_TYPE_ID_CORE),
    "sparse_probing": (SparseProbingEvalOutput, EVAL_TYPE_ID_SPARSE_PROBING),
    "scr": (ScrEvalOutput, EVAL_TYPE_ID_SCR),
    "tpp": (TppEvalOutput, EVAL_TYPE_ID_TPP),
    "absorption": (AbsorptionEvalOutput, EVAL_TYPE_ID_ABSORPTION),
    "meta_structure": (MetaStructureEvalOutput, EVAL_TYPE_ID_META_STRUCTURE),
}
__all__ = ["IdentitySAE", "PCASAE", "fit_PCA", "OUTPUT_CLASSES"]
EVAL_MODULES = (core_main, sparse_main, scr_main, absorption_main, meta_main)


@contextlib.contextmanager
def _swapped(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def _merged(table: dict, extra: dict) -> Iterator[None]:
    added = [k for k in extra if k not in table]
    table.update(extra)
    try:
        yield
    finally:
        for k in added:
            table.pop(k, None)


@contextlib.contextmanager
def _jaxtyping_disabled() -> Iterator[None]:
    old = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", old)


class ModelProvider:
    """Stands in for `HookedTransformer` in SAEBench's eval modules: `from_pretrained_no_processing(name)` returns
    the already loaded Qwen3 model for its name, and defers to TransformerLens for any other name."""

    def __init__(self, model: Any, name: str, original: Any):
        self.model, self.name, self.original = model, name, original

    def from_pretrained_no_processing(self, model_name: str, *args: Any, **kwargs: Any) -> Any:
        if model_name == self.name:
            return self.model
        return self.original.from_pretrained_no_processing(model_name, *args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.original, attr)


def first_letter_token_pos(tokenizer: Any, template: str = "{word} has the first letter:") -> int:
    """Offset from the end of absorption's prompt to the word's last token, for this tokenizer (Gemma: -6)."""
    word = "cat"
    with_word = tokenizer(template.format(word=word), add_special_tokens=False)["input_ids"]
    word_only = tokenizer(word, add_special_tokens=False)["input_ids"]
    return -(len(with_word) - len(word_only) + 1)


@contextlib.contextmanager
def padding_side(tokenizer: Any, side: str) -> Iterator[None]:
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = old


def _offline_loaders(data: BenchData) -> tuple[Any, Any]:
    probe = {s.name: s for s in data.probe_sets}
    spurious = {s.name: s for s in data.spurious_sets}
    hub_multi = dataset_utils.get_multi_label_train_test_data
    hub_scr = dataset_creation.get_train_test_data

    def multi_label(dataset_name: str, train_set_size: int, test_set_size: int, random_seed: int):
        if dataset_name not in probe:
            return hub_multi(dataset_name, train_set_size, test_set_size, random_seed)
        s = probe[dataset_name]
        return {k: list(v) for k, v in s.train.items()}, {k: list(v) for k, v in s.test.items()}

    def train_test(
        dataset_name: str,
        spurious_corr: bool,
        train_set_size: int,
        test_set_size: int,
        random_seed: int,
        column1_vals: tuple[str, str] | None = None,
        column2_vals: tuple[str, str] | None = None,
    ):
        if not spurious_corr or dataset_name not in spurious:
            return hub_scr(
                dataset_name, spurious_corr, train_set_size, test_set_size, random_seed, column1_vals, column2_vals
            )
        s = spurious[dataset_name]
        parts = []
        for frame, size in ((s.train, train_set_size), (s.test, test_set_size)):
            parts.append(
                dataset_creation.get_spurious_corr_data(
                    pd.DataFrame(frame), column1_vals, column2_vals, dataset_name, size // 4, random_seed
                )
            )
        return dataset_utils.ensure_shared_keys(parts[0], parts[1])

    return multi_label, train_test


@contextlib.contextmanager
def bench_session(model: Any, model_name: str, data: BenchData, workdir: Path) -> Iterator[None]:
    """Everything SAEBench needs to run on `model` with `data`, writing only under `workdir`, for one `with`."""
    multi_label, train_test = _offline_loaders(data)
    probe_classes = {s.name: s.classes for s in data.probe_sets}
    metadata = {s.name: s.metadata() for s in data.spurious_sets}
    column2 = {s.name: s.column2_values for s in data.spurious_sets}
    column2.update({name: ("", "") for name in probe_classes if name not in column2})  # TPP looks it up too
    absorption_dir = workdir / "absorption"
    k_sparse = functools.partial(
        absorption_main.run_k_sparse_probing_experiment,
        experiment_dir=absorption_dir / SPARSE_PROBING_EXPERIMENT_NAME,
        probes_dir=absorption_dir / "probes",
    )
    feature_absorption = functools.partial(
        absorption_main.run_feature_absortion_experiment,
        experiment_dir=absorption_dir / FEATURE_ABSORPTION_EXPERIMENT_NAME,
        sparse_probing_experiment_dir=absorption_dir / SPARSE_PROBING_EXPERIMENT_NAME,
        probes_dir=absorption_dir / "probes",
    )
    workdir.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    with contextlib.ExitStack() as stack:
        for module in (sparse_main, scr_main, absorption_main):
            provider = ModelProvider(model, model_name, module.HookedTransformer)
            stack.enter_context(_swapped(module, "HookedTransformer", provider))
        for module in EVAL_MODULES:
            if hasattr(module, "get_sae_bench_version"):
                stack.enter_context(_swapped(module, "get_sae_bench_version", lambda: PROVENANCE))
        stack.enter_context(_swapped(dataset_utils, "get_multi_label_train_test_data", multi_label))
        stack.enter_context(_swapped(dataset_creation, "get_train_test_data", train_test))
        stack.enter_context(_merged(dataset_info.chosen_classes_per_dataset, probe_classes))
        stack.enter_context(_merged(dataset_info.dataset_metadata, metadata))
        stack.enter_context(_merged(scr_main.COLUMN2_VALS_LOOKUP, column2))
        stack.enter_context(_swapped(absorption_main, "run_k_sparse_probing_experiment", k_sparse))
        stack.enter_context(_swapped(absorption_main, "run_feature_absortion_experiment", feature_absorption))
        stack.enter_context(_jaxtyping_disabled())
        os.chdir(workdir)  # absorption writes ./artifacts/absorption/*.json
        try:
            yield
        finally:
            os.chdir(cwd)

"""Every private SAELens / torch API qwen3-scope uses, in one place, with the reason for each.

Why one module: SAELens is pinned to the tested minor series (`SAE_LENS_SPEC`) and checked at import, but a
private symbol can change in any release. Each accessor below resolves its symbol when called and raises
`PrivateAPIError` naming it, and `tests/test_compat.py` exercises every entry of `PRIVATE_APIS` on real
objects, so an upgrade that breaks one fails loudly with the symbol's name instead of deep in training.
Public APIs are used everywhere else; add a symbol here only when no public one does the job.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet

from qwen3_scope.core.errors import IncompatibleVersionError, PrivateAPIError

if TYPE_CHECKING:
    import torch

# Importing this module does not import torch or SAELens: `check_sae_lens_version` runs first thing at
# `import qwen3_scope` and in the CLI. The torch accessors import torch when called.

# The SAELens minor series this release is tested with (pyproject pins the same range).
SAE_LENS_SPEC = ">=6.54,<6.55"
SKIP_VERSION_CHECK_ENV = "QWEN3_SCOPE_SKIP_VERSION_CHECK"


@dataclass(frozen=True)
class PrivateAPI:
    symbol: str
    reason: str


PRIVATE_APIS: tuple[PrivateAPI, ...] = (
    PrivateAPI(
        "sae_lens.MultiSAETrainingRunner._set_sae_metadata",
        "the suite trainer drives MultiSAETrainer itself (segmented, resumable data stream), so the runner's "
        "run() that sets each SAE's metadata (hook, model, context, prepend_bos, ...) is not called; copying "
        "the field list would drift from SAELens.",
    ),
    PrivateAPI(
        "sae_lens.training.activations_store.ActivationsStore._iterate_tokenized_sequences",
        "restarting the store's sequence iterator after swapping in the next data segment (resume at a row "
        "offset); SAELens has no public reset for `iterable_sequences`.",
    ),
    PrivateAPI(
        "sae_lens.training.activations_store.ActivationsStore._iterate_filtered_multi_hook_activations",
        "SAELens' special-token-filtered multi-hook activation stream, which the suite trainer wraps with an "
        "outlier filter before SAELens' own mixing buffer; the public get_multi_hook_data_loader mixes first.",
    ),
    PrivateAPI(
        "sae_lens.training.activations_store.ActivationsStore._get_filtered_multi_hook_llm_batch",
        "one filtered multi-hook batch for held-out evaluation with the training filters (no mixing buffer).",
    ),
    PrivateAPI(
        "torch._C._storage_Use_Count",
        "the fast SAEs' buffer pool reuses a buffer only when nothing but the pool holds its storage; "
        "without it the pool just allocates (slower, same results).",
    ),
    PrivateAPI(
        "torch.nn.Module._forward_hooks/_backward_hooks",
        "the fast SAEs take the sparse path only when no hook is attached to the SAE's hook points (a hook "
        "must see the dense tensors); torch has no public 'has hooks' query.",
    ),
    PrivateAPI(
        "torch.ops.aten._embedding_bag_per_sample_weights_backward",
        "the gathered row-wise dot product (SDDMM) kernel of the fast SAEs' sparse backward; no public op "
        "computes it without materialising the dense (tokens x d_sae) product.",
    ),
    PrivateAPI(
        "torch.autograd.Variable._execution_engine.queue_callback",
        "data-parallel training all-reduces the SAE gradients once the backward pass has accumulated all of them "
        "and before SAELens clips and steps (what DDP's reducer does); torch has no public after-backward hook.",
    ),
)


def _missing(symbol: str, err: BaseException | None = None) -> PrivateAPIError:
    detail = f" ({type(err).__name__}: {err})" if err is not None else ""
    return PrivateAPIError(
        f"private API {symbol} is not available in the installed versions{detail}. qwen3-scope is tested with "
        f"sae-lens{SAE_LENS_SPEC} and the torch range in its pyproject; install those "
        f"(pip install 'sae-lens{SAE_LENS_SPEC}') or upgrade qwen3-scope."
    )


def _method(obj: Any, name: str, symbol: str) -> Callable[..., Any]:
    method = getattr(obj, name, None)
    if not callable(method):
        raise _missing(symbol)
    return method


# ---- SAELens -------------------------------------------------------------------------------------------


def set_sae_metadata(runner: Any) -> None:
    """SAELens' own per-SAE metadata from a `MultiSAETrainingRunner`'s config."""
    _method(runner, "_set_sae_metadata", PRIVATE_APIS[0].symbol)()


def restart_tokenized_sequences(store: Any) -> None:
    """Make the store read `store.dataset` from its start again (after it was replaced)."""
    store.iterable_sequences = _method(store, "_iterate_tokenized_sequences", PRIVATE_APIS[1].symbol)()


def filtered_multi_hook_activations(store: Any) -> Iterator[dict[str, torch.Tensor]]:
    """The store's endless stream of special-token-filtered activations, one dict (hook -> (tokens, d)) a batch."""
    return _method(store, "_iterate_filtered_multi_hook_activations", PRIVATE_APIS[2].symbol)()


def filtered_multi_hook_batch(store: Any, raise_on_epoch_end: bool = True) -> dict[str, torch.Tensor]:
    """One special-token-filtered batch of activations at every hook of the store (StopIteration at the end)."""
    return _method(store, "_get_filtered_multi_hook_llm_batch", PRIVATE_APIS[3].symbol)(
        raise_on_epoch_end=raise_on_epoch_end
    )


# ---- torch ---------------------------------------------------------------------------------------------


@functools.cache
def _use_count() -> Callable[[int], int] | None:
    import torch  # lazy: keeps the CLI from importing torch

    return getattr(torch._C, "_storage_Use_Count", None)


def storage_use_count_available() -> bool:
    return _use_count() is not None


def storage_use_count(storage: torch.UntypedStorage) -> int:
    """How many tensors/storages reference this storage (1: only the caller's handle)."""
    use_count = _use_count()
    if use_count is None:
        raise _missing(PRIVATE_APIS[4].symbol)
    return int(use_count(storage._cdata))


def module_has_hooks(module: torch.nn.Module) -> bool:
    """True when a forward or backward hook is registered directly on `module`."""
    try:
        return bool(module._forward_hooks or module._backward_hooks)
    except AttributeError as err:
        raise _missing(PRIVATE_APIS[5].symbol, err) from err


def per_sample_weights_backward() -> Callable[..., torch.Tensor]:
    """aten's embedding_bag per-sample-weights gradient: (grad, weight, indices, offsets, offset2bag, mode, pad)."""
    import torch  # lazy: keeps the CLI from importing torch

    try:
        return torch.ops.aten._embedding_bag_per_sample_weights_backward
    except (AttributeError, RuntimeError) as err:
        raise _missing(PRIVATE_APIS[6].symbol, err) from err


def queue_after_backward(callback: Callable[[], None]) -> None:
    """Run `callback` once the running backward pass has accumulated every gradient (inside `.backward()`)."""
    import torch  # lazy: keeps the CLI from importing torch

    try:
        queue = torch.autograd.Variable._execution_engine.queue_callback  # type: ignore[attr-defined]
    except AttributeError as err:
        raise _missing(PRIVATE_APIS[7].symbol, err) from err
    queue(callback)


# ---- version policy ------------------------------------------------------------------------------------


def check_sae_lens_version(installed: str | None = None) -> str:
    """Raise `IncompatibleVersionError` unless SAELens is in the tested minor series; returns its version."""
    if installed is None:
        try:
            installed = metadata.version("sae-lens")  # looked up at call time: tests may replace it
        except metadata.PackageNotFoundError:
            raise IncompatibleVersionError(
                f"sae-lens is not installed; qwen3-scope needs sae-lens{SAE_LENS_SPEC}: "
                f"pip install 'sae-lens{SAE_LENS_SPEC}'"
            ) from None
    if installed not in SpecifierSet(SAE_LENS_SPEC) and not os.environ.get(SKIP_VERSION_CHECK_ENV):
        raise IncompatibleVersionError(
            f"qwen3-scope is tested with sae-lens{SAE_LENS_SPEC} (it uses SAELens internals listed in "
            f"qwen3_scope/core/compat.py), but sae-lens {installed} is installed. Install a tested version with "
            f"pip install 'sae-lens{SAE_LENS_SPEC}', or set {SKIP_VERSION_CHECK_ENV}=1 to try this one anyway."
        )
    return installed

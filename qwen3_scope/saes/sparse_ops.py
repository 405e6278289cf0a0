"""Sparse-dense products and autograd functions for fast TopK/JumpReLU SAE training.

Why: a TopK or JumpReLU SAE only touches its k active latents per token, yet SAELens' training classes
run the decoder and the whole backward as dense (tokens x d_sae) matmuls. Here the active
(token, latent) pairs drive three products, all built on `embedding_bag` (fbgemm on CPU):
- `spmm`:   out[t] = sum_pairs v * W[latent]       (decode)
- `spmm_t`: out[i] = sum_pairs v * X[token]        (decoder and encoder weight gradients)
- `sddmm`:  v[pair] = G[token] . W[latent]         (gradient w.r.t. the active values)
Dense (tokens x subset) matmuls take over when the pairs fill more than `max_density` of a block,
which is what the AuxK loss over a small set of dead latents looks like.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qwen3_scope.core.compat import per_sample_weights_backward, storage_use_count, storage_use_count_available
from qwen3_scope.core.errors import Qwen3ScopeError


class GraphAlreadyFreedError(Qwen3ScopeError, RuntimeError):
    """A fast SAE training graph backpropagated a second time (its buffers are freed after one backward)."""


def bf16_matmul_supported(device: str | torch.device) -> bool:
    """True where bfloat16 matmuls run natively (AMX/AVX512-BF16 CPUs, bf16-capable GPUs), so they beat fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)  # private but stable probes; /proc/cpuinfo is the fallback
        if check is not None and check():
            return True
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_compute_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """Map a config's compute_dtype ("auto" | "float32" | "bfloat16") to the dtype the matmuls run in."""
    if name == "auto":
        return torch.bfloat16 if bf16_matmul_supported(device) else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


class BufferPool:
    """Hands out large per-step buffers again once nothing but the pool references their memory.

    Why: PyTorch's CPU allocator returns big blocks to the OS, and first-touching fresh memory costs about
    1 ms per MB on VMs (page faults), as much as the sparse math of a step. Reuse is decided on the storage's
    use count, so a buffer still held anywhere (as `param.grad`, a step output, a view) is never overwritten.
    """

    def __init__(self, max_per_key: int = 3) -> None:
        self.max_per_key = max_per_key
        self._slots: dict[str, list[tuple[torch.UntypedStorage, dict[str, Any]]]] = {}

    def take(
        self, key: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, zeros: bool = False
    ) -> tuple[Tensor, dict[str, Any]]:
        """A tensor of `shape` and the slot's notes (e.g. which entries a previous step dirtied)."""
        nbytes = dtype.itemsize * _numel(shape)
        slots = self._slots.setdefault(key, [])
        for storage, notes in slots:
            if storage.device == device and storage.nbytes() >= nbytes and _only_pool_holds(storage):
                tensor = torch.empty(0, dtype=dtype, device=device).set_(storage, 0, shape)  # type: ignore[call-overload]  # torch stubs require stride; it defaults to contiguous
                if zeros:
                    dirty = notes.pop("dirty", None)
                    if dirty is not None and notes.get("dtype") == dtype and notes.get("shape") == shape:
                        tensor.view(-1).index_fill_(0, dirty, 0)
                    else:
                        tensor.zero_()
                notes.update(dtype=dtype, shape=shape)
                return tensor, notes
        tensor = (torch.zeros if zeros else torch.empty)(shape, dtype=dtype, device=device)
        notes = {"dtype": dtype, "shape": shape}
        if len(slots) < self.max_per_key and storage_use_count_available():
            slots.append((tensor.untyped_storage(), notes))
        return tensor, notes

    def clear(self) -> None:
        self._slots.clear()


def _only_pool_holds(storage: torch.UntypedStorage) -> bool:
    return storage_use_count_available() and storage_use_count(storage) == 1  # without it the pool just allocates


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


@dataclass
class Pairs:
    """The active (token, latent) pairs of one batch, grouped by token (CSR); by-latent grouping on demand."""

    rows: Tensor  # (nnz,) token of each pair, non-decreasing
    cols: Tensor  # (nnz,) latent of each pair
    row_offsets: Tensor  # (n_rows,) index of each token's first pair
    n_rows: int
    n_cols: int
    subset: Tensor | None = None  # latents the pairs come from; dense mode multiplies only these
    local_cols: Tensor | None = None  # position of each pair's latent in `subset`
    dense: bool = False
    _by_col: tuple[Tensor, Tensor, Tensor] | None = None

    @classmethod
    def from_topk(cls, indices: Tensor, n_cols: int, max_density: float, subset: Tensor | None = None) -> Pairs:
        """Pairs from (tokens, k) top-k indices; with `subset`, indices are positions inside it."""
        n_rows, k = indices.shape
        local = indices.reshape(-1)
        cols = local if subset is None else subset[local]
        rows = torch.arange(n_rows, device=indices.device).repeat_interleave(k)
        offsets = torch.arange(0, n_rows * k, k, device=indices.device)
        width = n_cols if subset is None else subset.numel()
        dense = n_rows * k > max_density * n_rows * width
        return cls(rows, cols, offsets, n_rows, n_cols, subset, local, dense)

    @classmethod
    def from_mask(cls, mask: Tensor, max_density: float) -> Pairs:
        """Pairs from a (tokens, latents) boolean mask, in row-major order."""
        n_rows, n_cols = mask.shape
        rows, cols = mask.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=n_rows)
        offsets = counts.cumsum(0) - counts
        dense = rows.numel() > max_density * n_rows * n_cols
        return cls(rows, cols, offsets, n_rows, n_cols, None, cols, dense)

    @property
    def nnz(self) -> int:
        return self.rows.numel()

    def by_col(self) -> tuple[Tensor, Tensor, Tensor]:
        """(order of pairs sorted by latent, their tokens, offset of each latent's first pair)."""
        if self._by_col is None:
            order = torch.argsort(self.cols, stable=True)
            counts = torch.bincount(self.cols, minlength=self.n_cols)
            self._by_col = (order, self.rows[order], counts.cumsum(0) - counts)
        return self._by_col

    def weight_rows(self, weight: Tensor) -> Tensor:
        return weight if self.subset is None else weight.index_select(0, self.subset)

    def to_dense(self, values: Tensor) -> Tensor:
        width = self.n_cols if self.subset is None else self.subset.numel()
        out = torch.zeros(self.n_rows, width, dtype=values.dtype, device=values.device)
        return out.index_put_((self.rows, self.local_cols), values)


def spmm(pairs: Pairs, values: Tensor, weight: Tensor, out: Tensor) -> Tensor:
    """out[t] = sum over t's pairs of value * weight[latent]; out is (n_rows, d) in any float dtype."""
    if pairs.dense:
        return out.copy_(pairs.to_dense(values) @ pairs.weight_rows(weight))

    def rows(lo: int, hi: int) -> None:
        out[lo:hi].copy_(_bag(pairs.cols, weight, pairs.row_offsets, values, lo, hi, pairs.n_rows))

    _for_chunks(pairs.n_rows, _rows_per_chunk(weight), rows)
    return out


def spmm_t(pairs: Pairs, values: Tensor, x: Tensor, out: Tensor, accumulate: bool = False) -> Tensor:
    """out[i] (+)= sum over latent i's pairs of value * x[token]; out is (n_cols, d) in any float dtype."""
    if pairs.dense:
        part = (pairs.to_dense(values).t() @ x).to(out.dtype)
        if pairs.subset is None:
            return out.add_(part) if accumulate else out.copy_(part)
        return (out if accumulate else out.zero_()).index_add_(0, pairs.subset, part)
    order, rows_by_col, col_offsets = pairs.by_col()
    sorted_values = values[order]

    def latents(lo: int, hi: int) -> None:
        part = _bag(rows_by_col, x, col_offsets, sorted_values, lo, hi, pairs.n_cols)
        out[lo:hi].add_(part) if accumulate else out[lo:hi].copy_(part)

    _for_chunks(pairs.n_cols, _rows_per_chunk(x), latents)
    return out


def sddmm(pairs: Pairs, grad: Tensor, weight: Tensor) -> Tensor:
    """v[pair] = grad[token] . weight[latent]: (nnz,)."""
    if pairs.dense:
        return (grad @ pairs.weight_rows(weight).t())[pairs.rows, pairs.local_cols]
    order, rows_by_col, col_offsets = pairs.by_col()
    cols_by_col = pairs.cols[order]
    sorted_dots = torch.empty(pairs.nnz, dtype=grad.dtype, device=grad.device)

    def latents(lo: int, hi: int) -> None:
        first, last = _pair_range(col_offsets, lo, hi, pairs.nnz, pairs.n_cols)
        # embedding_bag's per_sample_weights gradient kernel is a gathered row-wise dot. Walking the pairs
        # latent by latent reads each weight row once and gathers from the small (tokens, d) grad instead.
        sorted_dots[first:last] = per_sample_weights_backward()(
            weight[lo:hi],
            grad,
            rows_by_col[first:last],
            col_offsets[lo:hi] - first,
            cols_by_col[first:last] - lo,
            0,
            -1,
        )

    _for_chunks(pairs.n_cols, _rows_per_chunk(weight), latents)
    return torch.empty_like(sorted_dots).index_put_((order,), sorted_dots)


def _bag(indices: Tensor, table: Tensor, offsets: Tensor, weights: Tensor, lo: int, hi: int, n_bags: int) -> Tensor:
    """Weighted bag sums for bags lo..hi (embedding_bag over a slice of the pairs)."""
    first, last = _pair_range(offsets, lo, hi, indices.numel(), n_bags)
    return F.embedding_bag(
        indices[first:last], table, offsets[lo:hi] - first, mode="sum", per_sample_weights=weights[first:last]
    )


def _pair_range(offsets: Tensor, lo: int, hi: int, nnz: int, n_bags: int) -> tuple[int, int]:
    first = int(offsets[lo]) if lo < n_bags else nnz
    last = int(offsets[hi]) if hi < n_bags else nnz
    return first, last


_CHUNK_BYTES = 4 << 20  # below glibc's mmap threshold, so chunk results reuse heap memory (no page faults)


def _rows_per_chunk(table: Tensor) -> int:
    if table.device.type != "cpu":  # GPUs have a caching allocator and run one kernel best
        return 1 << 62
    return max(1, _CHUNK_BYTES // (table.shape[1] * table.element_size()))


_executor: Any = None
_executor_threads = 0


def _for_chunks(n: int, rows: int, fn: Any) -> None:
    """fn(lo, hi) over row chunks, spread over the intra-op threads: the fbgemm bag kernels used here run
    single-threaded, and chunks keep each temporary small. Chunks write disjoint output rows."""
    bounds = list(range(0, n, rows)) + [n]
    chunks = list(zip(bounds[:-1], bounds[1:]))
    threads = min(torch.get_num_threads(), len(chunks))
    if threads <= 1:
        for lo, hi in chunks:
            fn(lo, hi)
        return
    global _executor, _executor_threads
    if _executor is None or _executor_threads < threads:
        _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qwen3-scope-sparse")
        _executor_threads = threads
    grad_enabled = torch.is_grad_enabled()  # grad mode is thread-local; workers must see the caller's

    def run(lo: int, hi: int) -> None:
        with torch.set_grad_enabled(grad_enabled):
            fn(lo, hi)

    for future in [_executor.submit(run, lo, hi) for lo, hi in chunks]:
        future.result()


@dataclass
class SparseStep:
    """What one training step's sparse products share: pair sets, compute-dtype copies, buffers."""

    enc_pairs: list[Pairs]
    dec_pairs: list[Pairs]
    sae_in: Tensor  # (tokens, d_in) encoder input after b_dec subtraction, in compute dtype
    W_dec: Tensor  # decoder in compute dtype
    apply_b_dec_to_input: bool
    compute_dtype: torch.dtype
    pool: BufferPool


class SparseEncode(torch.autograd.Function):
    """Pre-activations of the selected pairs (computed outside, by the dense encoder matmul) as a function of
    W_enc, b_enc and b_dec: the backward touches only those pairs."""

    @staticmethod
    def forward(ctx: Any, step: SparseStep, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, *pre_acts: Tensor):
        ctx.step = step
        ctx.save_for_backward(W_enc)
        return tuple(values.detach().clone() for values in pre_acts)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None):
        step = _take_step(ctx)
        (W_enc,) = ctx.saved_tensors
        grad_W_enc, _ = step.pool.take("grad_W_enc", tuple(W_enc.shape), W_enc.dtype, W_enc.device)
        grad_b_enc = torch.zeros_like(W_enc[0])
        first = True
        for pairs, grad in zip(step.enc_pairs, grads):
            if grad is None:
                continue
            if ctx.needs_input_grad[1]:  # rows of W_enc.T: the chunks are written transposed, in the same pass
                spmm_t(pairs, grad.to(step.compute_dtype), step.sae_in, grad_W_enc.t(), accumulate=not first)
                first = False
            grad_b_enc.index_add_(0, pairs.cols, grad.to(grad_b_enc.dtype))
        grad_W_enc_out = None if first else grad_W_enc
        grad_b_dec = None
        if ctx.needs_input_grad[3] and step.apply_b_dec_to_input:
            # sae_in = x - b_dec, so dL/db_dec = -sum_t W_enc @ dpre[t] = -W_enc @ dL/db_enc.
            grad_b_dec = -(W_enc @ grad_b_enc)
        grad_b_enc_out = grad_b_enc if ctx.needs_input_grad[2] else None
        return (None, grad_W_enc_out, grad_b_enc_out, grad_b_dec, *(None for _ in grads))


class SparseDecode(torch.autograd.Function):
    """sum over each token's pairs of value * W_dec[latent], one output per pair set; the backward gathers the
    active decoder rows for the value gradients and scatters token gradients into those rows."""

    @staticmethod
    def forward(ctx: Any, step: SparseStep, W_dec: Tensor, *values: Tensor):
        ctx.step = step
        ctx.save_for_backward(W_dec, *values)
        outputs = []
        for i, (pairs, vals) in enumerate(zip(step.dec_pairs, values)):
            out, _ = step.pool.take(f"decoded{i}", (pairs.n_rows, W_dec.shape[1]), vals.dtype, vals.device)
            outputs.append(spmm(pairs, vals.detach().to(step.compute_dtype), step.W_dec, out))
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None):
        step = _take_step(ctx)
        W_dec, *values = ctx.saved_tensors
        grad_values: list[Tensor | None] = []
        grad_W_dec, _ = step.pool.take("grad_W_dec", tuple(W_dec.shape), W_dec.dtype, W_dec.device)
        first = True
        for pairs, vals, grad in zip(step.dec_pairs, values, grads):
            if grad is None:
                grad_values.append(None)
                continue
            grad_c = grad.to(step.compute_dtype)
            grad_values.append(sddmm(pairs, grad_c, step.W_dec).to(vals.dtype))
            if ctx.needs_input_grad[1]:
                spmm_t(pairs, vals.to(step.compute_dtype), grad_c, grad_W_dec, accumulate=not first)
                first = False
        return (None, None if first else grad_W_dec, *grad_values)


def _take_step(ctx: Any) -> SparseStep:
    step = ctx.step
    if step is None:
        raise GraphAlreadyFreedError(
            "This fast SAE training graph was already backpropagated; its buffers are freed after one backward. "
            "Run training_forward_pass again instead of backward(retain_graph=True)."
        )
    ctx.step = None  # free the step's buffers as soon as the gradients exist
    return step

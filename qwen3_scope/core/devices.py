"""Where a job runs and in which precision: one place that resolves and checks `--device` / `--dtype`.

Why: every subcommand (train, eval, steer, ...) takes the same four settings, SAELens-style: the LLM's
device and dtype, and the SAE's own device and dtype (SAELens' `llm_device` / `device` split). They are
checked here, before any model loads, so a wrong value is one clear sentence instead of a CUDA traceback
minutes into a run. Devices: `cpu`, `cuda`, `cuda:N`, `mps`; the default is `cuda` when this torch sees
a GPU, else `cpu`. Dtypes: `float32`, `bfloat16`, `float16`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qwen3_scope.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

# Importing this module does not import torch (job configs inherit `PlacementOptions`, and the CLI builds its
# parsers from them); torch is imported when a setting is checked. `DTYPES` (name -> torch dtype) is made on
# first access, through the module's __getattr__.
DTYPE_NAMES: tuple[str, ...] = ("float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
_DEVICE = re.compile(r"(cpu|mps|cuda)(?::(\d+))?")


class DeviceError(ConfigError):
    """A device or dtype this machine (or this build of torch) cannot run."""


def _dtypes() -> dict[str, torch.dtype]:
    import torch  # lazy: keeps the CLI from importing torch

    return {name: getattr(torch, name) for name in DTYPE_NAMES}


def __getattr__(name: str) -> Any:
    if name == "DTYPES":
        return _dtypes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_device() -> str:
    import torch  # lazy: keeps the CLI from importing torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None = None) -> str:
    """`None`/"auto" -> the default; otherwise the device string, checked against this machine."""
    import torch  # lazy: keeps the CLI from importing torch

    if device is None or str(device) in ("", "auto"):
        return default_device()
    text = str(device).strip().lower()
    match = _DEVICE.fullmatch(text)
    if match is None:
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N (e.g. cuda:1) or mps.")
    kind, index = match[1], match[2]
    if kind == "cpu":
        if index is not None:
            raise DeviceError(f"device {device!r}: the CPU has no index; pass --device cpu.")
        return "cpu"
    if kind == "mps":
        if not torch.backends.mps.is_built():
            raise DeviceError(
                "mps requested but this torch has no MPS support (it needs macOS on Apple silicon); pass --device cpu."
            )
        if not torch.backends.mps.is_available():
            raise DeviceError("mps requested but no MPS device is available on this machine; pass --device cpu.")
        return "mps"
    if not torch.backends.cuda.is_built():
        raise DeviceError(
            "cuda requested but this torch has no CUDA: install a CUDA build of torch or pass --device cpu."
        )
    if not torch.cuda.is_available():
        raise DeviceError(
            "cuda requested but torch sees no CUDA device (check the driver and CUDA_VISIBLE_DEVICES), "
            "or pass --device cpu."
        )
    if index is not None and int(index) >= torch.cuda.device_count():
        raise DeviceError(
            f"{text} requested but this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"so use cuda:0..cuda:{torch.cuda.device_count() - 1}."
        )
    return text


def dtype_name(dtype: str | torch.dtype | None) -> str:
    """'bf16', 'bfloat16' or torch.bfloat16 -> 'bfloat16' (None -> 'float32')."""
    if dtype is None:
        return "float32"
    if not isinstance(dtype, str):
        import torch  # lazy: keeps the CLI from importing torch

        if isinstance(dtype, torch.dtype):
            for name, value in _dtypes().items():
                if value == dtype:
                    return name
            raise DeviceError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPE_NAMES)}.")
    text = str(dtype).strip().lower().removeprefix("torch.")
    text = _ALIASES.get(text, text)
    if text not in DTYPE_NAMES:
        raise DeviceError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)}.")
    return text


def torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'bf16', 'bfloat16' or torch.bfloat16 -> torch.bfloat16 (unchecked against a device: see `resolve_dtype`)."""
    return _dtypes()[dtype_name(dtype)]


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """The torch dtype, checked against what the device can compute in."""
    import torch  # lazy: keeps the CLI from importing torch

    name = dtype_name(dtype)
    kind = torch.device(device).type
    if kind == "cpu" and name == "float16":
        raise DeviceError(
            "float16 is not supported on the CPU (torch has no fast float16 kernels there); "
            "use --dtype bfloat16 or float32 on the CPU, or float16 on a GPU."
        )
    if kind == "cuda" and name == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"{device} cannot compute in bfloat16 (it needs an Ampere or newer GPU); use --dtype float16 or float32."
        )
    if kind == "mps" and name == "bfloat16" and not _mps_bf16():
        raise DeviceError(
            "this MPS device cannot compute in bfloat16 (it needs macOS 14+); use --dtype float16 or float32."
        )
    return _dtypes()[name]


def _mps_bf16() -> bool:
    import torch  # lazy: keeps the CLI from importing torch

    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
        return True
    except (RuntimeError, TypeError):
        return False


@dataclass(frozen=True)
class Placement:
    """Resolved devices and dtypes of one job: the LLM's, and the SAEs' (which may sit elsewhere)."""

    device: str
    dtype: torch.dtype
    sae_device: str
    sae_dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    @property
    def sae_dtype_name(self) -> str:
        return dtype_name(self.sae_dtype)


def resolve_placement(
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    sae_device: str | None = None,
    sae_dtype: str | torch.dtype | None = None,
) -> Placement:
    """Check all four settings at once; the SAE's device defaults to the model's, its dtype to float32
    (SAELens' default: SAE weights and training stay in float32 even when the LLM runs in bfloat16)."""
    llm_device = resolve_device(device)
    sae_dev = resolve_device(sae_device) if sae_device not in (None, "", "auto") else llm_device
    return Placement(llm_device, resolve_dtype(dtype, llm_device), sae_dev, resolve_dtype(sae_dtype, sae_dev))


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class PlacementOptions:
    """The four placement settings every job config inherits (and so every subcommand offers):
    `--device`, `--dtype` (the LLM), `--sae-device`, `--sae-dtype` (the SAEs). Checked in `__post_init__`."""

    device: str | None = field(
        default=None,
        metadata=_help("device of the LLM: cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)"),
    )
    dtype: str = field(default="float32", metadata=_help("dtype of the LLM: float32, bfloat16 or float16"))
    sae_device: str | None = field(
        default=None, metadata=_help("device of the SAEs (SAELens' LLM/SAE device split; default: the LLM's)")
    )
    sae_dtype: str | None = field(
        default=None, metadata=_help("dtype of the SAEs (default: float32 for training, as saved otherwise)")
    )

    def __post_init__(self) -> None:
        placement = resolve_placement(self.device, self.dtype, self.sae_device, self.sae_dtype)
        self.device, self.sae_device, self.dtype = placement.device, placement.sae_device, dtype_name(self.dtype)
        if self.sae_dtype is not None:
            self.sae_dtype = dtype_name(self.sae_dtype)

    @property
    def resolved_device(self) -> str:
        """`device` as `__post_init__` resolved it (never None after construction)."""
        assert self.device is not None, "PlacementOptions.__post_init__ resolves the device"
        return self.device

    @property
    def resolved_sae_device(self) -> str:
        """`sae_device` as `__post_init__` resolved it (never None after construction)."""
        assert self.sae_device is not None, "PlacementOptions.__post_init__ resolves the SAE device"
        return self.sae_device

    @property
    def placement(self) -> Placement:
        return resolve_placement(self.device, self.dtype, self.sae_device, self.sae_dtype)

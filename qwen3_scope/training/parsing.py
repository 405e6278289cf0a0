"""Parsers for the human forms of token counts ('200k', '4B'), layer lists ('0-8', '3,5,7') and per-site widths
('attn_out=640')."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from qwen3_scope.core.errors import ConfigError

_SCALE = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


class CountFormatError(ConfigError, argparse.ArgumentTypeError):
    """Raised for a malformed count, layer list or site width; argparse shows its message, library callers catch a
    ValueError (or Qwen3ScopeError)."""


def parse_tokens(text: str | int) -> int:
    """'200k', '4B', '1e6', '250000' -> int."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbg]?)\s*", str(text).lower())
    if match is None:
        raise CountFormatError(f"{text!r} is not a token count; write e.g. 200000, 200k, 50M or 4B.")
    return int(float(match[1]) * _SCALE.get(match[2], 1))


def parse_layers(items: list[str] | None) -> list[int] | None:
    """['0-3', '8', '10,12'] -> [0, 1, 2, 3, 8, 10, 12]; None or ['all'] -> None (the recipe's default)."""
    if not items or items == ["all"]:
        return None
    layers: list[int] = []
    for part in ",".join(str(i) for i in items).split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise CountFormatError(f"bad layer {part!r}; use numbers and ranges such as 0-8 or 3,5,7 (or 'all').")
        start, end = int(match[1]), int(match[2] or match[1])
        if end < start:
            raise CountFormatError(f"layer range {part!r} runs backwards; write {end}-{start}.")
        layers.extend(range(start, end + 1))
    return layers


def parse_site_width(text: str) -> tuple[str, int]:
    """'attn_out=640' -> ('attn_out', 640): a site's own SAE width."""
    match = re.fullmatch(r"\s*([a-z_]+)\s*=\s*([0-9]+)\s*", str(text))
    if match is None or int(match[2]) < 1:
        raise CountFormatError(f"{text!r} is not a site width; write SITE=WIDTH, e.g. attn_out=640.")
    return match[1], int(match[2])


def parse_sae_field(text: str) -> tuple[str, Any]:
    """'topk_threshold_lr=0.02' -> ('topk_threshold_lr', 0.02): one SAE config field; the value is read as JSON
    (numbers, true/false, null, lists), else kept as text."""
    match = re.fullmatch(r"\s*([a-z_][a-z0-9_]*)\s*=\s*(.+?)\s*", str(text))
    if match is None:
        raise CountFormatError(f"{text!r} is not an SAE field; write KEY=VALUE, e.g. topk_threshold_lr=0.02.")
    try:
        value = json.loads(match[2])
    except ValueError:
        value = {"True": True, "False": False, "None": None}.get(match[2], match[2])
    return match[1], value

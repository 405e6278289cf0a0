"""Derive a command line from a config dataclass, and load one from a YAML file.

Why: a job's options must be written once. Each field of a config dataclass (SAELens style: every field
documented, validation in `__post_init__`) carries its help text, and optionally its flag and parser, in
`field(metadata=...)`; `add_config_arguments` turns the fields into argparse options and
`config_from_args` builds the dataclass from `--config FILE.yaml` plus the options given on the command
line (command line wins). A YAML key that is not a field is an error naming the valid keys.

Field metadata keys: `help` (required for a CLI option), `flag` (e.g. "--tokens"; default
`--field-name`), `aliases` (more flags), `parse` (a str -> value function for argparse), `cli` (False:
library-only field).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from qwen3_scope.core.errors import ConfigError, CorruptFileError, MissingFileError

T = TypeVar("T")


class ConfigFileError(ConfigError):
    """A `--config` file that cannot be used: missing, empty, not YAML/JSON, or with keys the config lacks."""


class MissingConfigFileError(ConfigFileError, MissingFileError):
    pass


class CorruptConfigFileError(ConfigFileError, CorruptFileError):
    pass


def _strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def cli_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True) and f.init]


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, config_option: bool = True) -> None:
    """One option per field of `cls` (defaults stay in the dataclass: options not given are absent from the
    namespace, so a config file's values are not overwritten by argparse defaults)."""
    hints = typing.get_type_hints(cls)
    if config_option:
        parser.add_argument(
            "--config",
            metavar="FILE.yaml",
            default=argparse.SUPPRESS,
            help=f"read the {cls.__name__} from a YAML file (options given here override it)",
        )
    for f in cli_fields(cls):
        if "help" not in f.metadata:
            raise TypeError(
                f"{cls.__name__}.{f.name} has no help text; document it in field(metadata={{'help': ...}})."
            )
        flags = [f.metadata.get("flag", "--" + f.name.replace("_", "-")), *f.metadata.get("aliases", ())]
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )  # type: ignore[misc]
        help_text = f.metadata["help"] + ("" if default in (None, False, [], ()) else f" (default: {default})")
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text.replace("%", "%%"))
        tp = _strip_optional(hints[f.name])
        if "parse" in f.metadata:
            kwargs["type"] = f.metadata["parse"]
            if get_origin(tp) in (list, tuple, typing.Sequence):
                kwargs["nargs"] = "*"
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(tp) is Literal:
            kwargs["choices"] = list(get_args(tp))
        elif get_origin(tp) in (list, tuple) or tp is list:
            inner = [a for a in get_args(tp) if a is not Ellipsis]
            kwargs["nargs"] = "*" if not f.metadata.get("nargs") else f.metadata["nargs"]
            if inner and inner[0] in (int, float, str):
                kwargs["type"] = inner[0]
        elif tp in (int, float, str):
            kwargs["type"] = tp
        elif tp is Path:
            kwargs["type"] = str
        elif get_origin(tp) is dict or tp is dict:
            continue  # mappings are for config files and the library only
        else:
            kwargs["type"] = str
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        parser.add_argument(*flags, **kwargs)


def read_config_file(cls: type, path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) file, checked against the fields of `cls`."""
    path = Path(path).expanduser()
    expected = f"expected a YAML (or JSON) mapping of {cls.__name__} fields"
    if not path.is_file():
        raise MissingConfigFileError(f"config file {path} does not exist; {expected}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CorruptConfigFileError(f"{path} is not a text file ({err}); {expected}.") from err
    except yaml.YAMLError as err:
        raise CorruptConfigFileError(f"{path} is not valid YAML ({err}); {expected}.") from err
    if data is None:
        raise CorruptConfigFileError(
            f"config file {path} is empty; {expected} (e.g. `{next(iter(_field_names(cls)), 'field')}: ...`)."
        )
    if not isinstance(data, dict):
        raise CorruptConfigFileError(
            f"{path} must hold a mapping of {cls.__name__} fields, not a {type(data).__name__}."
        )
    known = set(_field_names(cls))
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigFileError(
            f"{path}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {', '.join(sorted(known))}."
        )
    return data


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def config_from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """`cls` from `--config FILE` (if given), then every option given on the command line, then `extra`."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(read_config_file(cls, args.config))
    names = {f.name for f in cli_fields(cls)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    values.update(extra)
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON/YAML data (what manifests record and `--config` reads back)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def doc(help: str, **more: Any) -> dict[str, Any]:
    """A config field's metadata: `field(default=..., metadata=doc("what it is", flag="--x", parse=...))` (the keys
    are listed in the module docstring)."""
    return {"help": help, **more}

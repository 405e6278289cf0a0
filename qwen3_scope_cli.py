"""The `qwen3-scope` console script: starts the command line without importing torch or SAELens up front.

Why a top-level module: importing anything inside `qwen3_scope` first runs `qwen3_scope/__init__.py`, which (for
library users and torchrun ranks) checks the SAELens version and registers the plugin with SAELens, importing
torch, transformers and SAELens: seconds before `qwen3-scope --help` could answer. The entry point has to run
before that package exists, so it lives outside it, shipped in the same distribution (pyproject `py-modules`).

How the package learns it is the command line: `main()` sets `starting` on this module before importing
`qwen3_scope.cli`, and `qwen3_scope/__init__.py` looks for this module in `sys.modules` and reads that flag.
`qwen3_scope` then defers its whole body (version check, public names, SAELens registration) to the first use of
a public name; the CLI makes that use (`qwen3_scope.register()`) before every command that needs SAELens, i.e.
all but `--help`, `info` without `--verify` and argument errors. Unlike an environment variable, the flag cannot
leak into child processes (torchrun ranks, `python -m qwen3_scope.train`, subprocesses) or into other library
users: it exists only in this interpreter, and only once this `main()` has run.
"""

from __future__ import annotations

starting = False  # True once `main()` runs: `qwen3_scope` then defers its imports and its SAELens registration


def main(argv: list[str] | None = None) -> int:
    global starting
    starting = True
    from qwen3_scope.cli import main as run  # lazy: the flag above must be set before `qwen3_scope` is imported

    return run(argv)


if __name__ == "__main__":  # `python -m qwen3_scope_cli ...` (e.g. with a tool venv's Python): the same command line
    import qwen3_scope_cli  # lazy: the flag lives on the module named qwen3_scope_cli, not on __main__

    raise SystemExit(qwen3_scope_cli.main())

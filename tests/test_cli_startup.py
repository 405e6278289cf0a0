"""The command line answers at once: `qwen3-scope --help`, every `qwen3-scope CMD --help`, `qwen3-scope info`
(without --verify) and argument errors import none of torch, transformers, TransformerLens, SAELens or pandas.

Each case runs the installed console script in a fresh process with PYTHONPROFILEIMPORTTIME=1, which makes
Python list every module it imports on stderr: the assertion is on that list, not on a timing (the timings are
in benchmarks/bench_cli_startup.py). A command that needs SAELens still gets the full `import qwen3_scope`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "transformer_lens", "sae_lens", "pandas")


def console_script() -> str:
    """The installed `qwen3-scope` of this interpreter's environment (not whatever is first on PATH)."""
    script = Path(sys.executable).parent / "qwen3-scope"
    if script.exists():
        return str(script)
    found = shutil.which("qwen3-scope")
    if found is None:
        pytest.fail("the qwen3-scope console script is not installed: pip install -e .")
    return found


def imports(done: subprocess.CompletedProcess) -> list[tuple[int, str]]:
    """(nesting depth, module) of every import the process made, in PYTHONPROFILEIMPORTTIME's order (a module is
    listed after the modules it imported, one indentation level deeper)."""
    found = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            name = line.rsplit("|", 1)[1]
            found.append(((len(name) - len(name.lstrip()) - 1) // 2, name.strip()))
    return found


def run_script(*argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `qwen3-scope ARGV`; (the finished process, the top-level names of every module it imported)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([console_script(), *argv], capture_output=True, text=True, env=env, timeout=300)
    imported = {name.split(".")[0] for _, name in imports(done)}
    assert "qwen3_scope" in imported, done.stderr[-2000:]  # the listing works (the package itself is in it)
    return done, imported


def import_chain(done: subprocess.CompletedProcess, module: str) -> str:
    """Who first imported `module`: 'torch <- qwen3_scope.x.y <- qwen3_scope.cli' (for the failure message)."""
    listed = imports(done)
    for i, (depth, name) in enumerate(listed):
        if name == module:
            chain = [name]
            for outer_depth, outer in listed[i + 1 :]:
                if outer_depth < depth:
                    chain.append(outer)
                    depth = outer_depth
            return " <- ".join(chain)
    return module


def error_lines(done: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))


def assert_light(done: subprocess.CompletedProcess, imported: set[str]) -> None:
    heavy = sorted(imported.intersection(HEAVY))
    chains = "\n".join(import_chain(done, module) for module in heavy)
    assert not heavy, (
        f"`qwen3-scope {' '.join(done.args[1:])}` imported {heavy}:\n{chains}\n{error_lines(done)[-2000:]}"
    )
    assert "Traceback" not in done.stderr, error_lines(done)[-2000:]


def subcommands() -> list[list[str]]:
    """Every (nested) subcommand of the parser: ['train'], ['steer', 'refusal'], ['apps', 'toxicity'], ..."""
    from qwen3_scope.cli import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*prefix, name])
                    found.extend(walk(sub, [*prefix, name]))
        return found

    return walk(build_parser(), [])


def test_help_is_light():
    done, imported = run_script("--help")
    assert done.returncode == 0 and "usage: qwen3-scope" in done.stdout
    assert_light(done, imported)


def test_python_dash_m_runs_the_same_light_command_line():
    """`python -m qwen3_scope_cli ...` (how a tool venv's Python runs a command) is the console script's command line."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "qwen3_scope_cli", "--help"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "usage: qwen3-scope" in done.stdout, done.stderr[-2000:]
    assert_light(done, {name.split(".")[0] for _, name in imports(done)})


@pytest.mark.parametrize("command", [" ".join(c) for c in subcommands()])
def test_every_subcommand_help_is_light(command):
    done, imported = run_script(*command.split(), "--help")
    assert done.returncode == 0 and f"usage: qwen3-scope {command}" in done.stdout, error_lines(done)[-2000:]
    assert_light(done, imported)


def test_info_is_light():
    done, imported = run_script("info")
    assert done.returncode == 0 and "Qwen3 dense:" in done.stdout and "Sites:" in done.stdout
    assert_light(done, imported)


def test_info_of_a_model_is_light():
    done, imported = run_script("info", "--model", "Qwen/Qwen3-4B")
    assert done.returncode == 0, error_lines(done)[-2000:]
    assert "Qwen/Qwen3-4B (Qwen3 dense): 36 layers" in done.stdout
    assert "blocks.35.hook_resid_post" in done.stdout and "model.layers.35" in done.stdout
    assert_light(done, imported)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--no-such-option"],  # argparse's usage error
        ["steer"],  # a missing sub-subcommand
        [],  # no command at all
        ["info", "--model", "Qwen/Qwen3-4"],  # an unknown model: our ConfigError, one line
    ],
    ids=["unknown-option", "missing-study", "no-command", "unknown-model"],
)
def test_argument_errors_are_light_and_one_line(argv):
    done, imported = run_script(*argv)
    assert done.returncode == 2, error_lines(done)[-2000:]
    assert "error:" in error_lines(done)
    if argv[:1] == ["info"]:
        assert error_lines(done).startswith("qwen3-scope: error: unknown model")
    assert_light(done, imported)


def test_a_command_that_needs_saelens_registers_first():
    """The deferred `import qwen3_scope` is completed before the command runs: the plugin's loaders and classes are
    in SAELens' registries afterwards (same process, the launcher's own entry point)."""
    code = (
        "import qwen3_scope_cli, sys\n"
        "code = qwen3_scope_cli.main(['releases', 'list', '--pattern', 'organism/resid_post'])\n"
        "import sae_lens.loading.pretrained_sae_loaders as loaders, sae_lens.registry as registry\n"
        "assert code == 0, code\n"
        "assert 'qwen3_scope' in loaders.NAMED_PRETRAINED_SAE_LOADERS\n"
        "assert {'topk_fast', 'jumprelu_fast'} <= set(registry.SAE_TRAINING_CLASS_REGISTRY)\n"
        "import qwen3_scope; assert qwen3_scope.hook_name is not None\n"
        "print('registered')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "organism/resid_post" in done.stdout and done.stdout.rstrip().endswith("registered")

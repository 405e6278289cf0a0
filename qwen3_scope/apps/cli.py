"""`qwen3-scope apps <name> --out DIR`: Qwen-Scope's applications from the command line, one subcommand per
application of `apps.config.APPS`, its options derived from the application's config dataclass.

    qwen3-scope apps toxicity --out runs/apps/toxicity             # organism + its bundled suite
    qwen3-scope apps redundancy --suite runs/suite --out runs/apps/redundancy
    qwen3-scope apps sasft --config sasft.yaml --out runs/apps/sasft
"""

from __future__ import annotations

import argparse

from qwen3_scope.apps import summary_line, write_outputs
from qwen3_scope.apps.config import APPS
from qwen3_scope.core.config_cli import add_config_arguments, config_from_args


def cmd_app(args: argparse.Namespace) -> None:
    spec = APPS[args.app]
    config = config_from_args(spec.config, args)  # validated before anything loads
    from qwen3_scope.apps.runs import RUNS  # lazy: keeps the CLI from importing torch

    result = RUNS[spec.name](config)
    paths = write_outputs(result, args.out, config)
    print(summary_line(result.summary))
    for key, path in paths.items():
        print(f"{key:>14}: {path}")


def add_cli(subparsers) -> None:
    apps = subparsers.add_parser("apps", help=f"Qwen-Scope's applications: {', '.join(APPS)}")
    names = apps.add_subparsers(dest="app", required=True)
    for name, spec in APPS.items():
        text = spec.help.replace("%", "%%")  # argparse formats help strings with %
        p = names.add_parser(name, help=text, description=spec.help)
        p.add_argument("--out", required=True, help="output directory (summary.json, CSV/Markdown tables, PNG plots)")
        add_config_arguments(p, spec.config)
        p.set_defaults(func=cmd_app)

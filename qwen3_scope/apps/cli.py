"""`qwen3-scope apps <name> --out DIR`: Qwen-Scope's applications from the command line, one subcommand per
registered application, its options derived from the application's config dataclass.

    qwen3-scope apps toxicity --out runs/apps/toxicity             # organism + its bundled suite
    qwen3-scope apps redundancy --suite runs/suite --out runs/apps/redundancy
    qwen3-scope apps sasft --config sasft.yaml --out runs/apps/sasft
"""

from __future__ import annotations

import argparse


def cmd_app(args: argparse.Namespace) -> None:
    from qwen3_scope.apps import APPS, summary_line, write_outputs
    from qwen3_scope.core.config_cli import config_from_args

    spec = APPS[args.app]
    config = config_from_args(spec.config, args)  # validated before anything loads
    result = spec.run(config)
    paths = write_outputs(result, args.out, config)
    print(summary_line(result.summary))
    for key, path in paths.items():
        print(f"{key:>14}: {path}")


def add_cli(subparsers) -> None:
    from qwen3_scope.apps import load_apps
    from qwen3_scope.core.config_cli import add_config_arguments

    apps = subparsers.add_parser("apps", help="Qwen-Scope's applications: toxicity, redundancy, sasft, synthesis")
    names = apps.add_subparsers(dest="app", required=True)
    for name, spec in load_apps().items():
        text = spec.help.replace("%", "%%")  # argparse formats help strings with %
        p = names.add_parser(name, help=text, description=spec.help)
        p.add_argument("--out", required=True, help="output directory (summary.json, CSV/Markdown tables, PNG plots)")
        add_config_arguments(p, spec.config)
        p.set_defaults(func=cmd_app)

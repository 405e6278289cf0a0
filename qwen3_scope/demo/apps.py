"""Demo stages `apps-<name>`: every registered application on the organism and the suite the demo trained
(or the bundled one), with the application's demo overrides; files under `<out>/apps/<name>`."""

from __future__ import annotations

from qwen3_scope.apps import AppSpec, load_apps, summary_line, write_outputs
from qwen3_scope.demo.run import DemoContext, stage


def _stage(spec: AppSpec):
    def run(ctx: DemoContext) -> None:
        config = spec.config(model=ctx.model, suite_dir=ctx.results.get("suite_dir"), **spec.demo)
        result = spec.run(config)
        out = ctx.out_dir / "apps" / spec.name
        write_outputs(result, out, config)
        ctx.results[f"apps_{spec.name}"] = result.summary
        ctx.section(
            f"Application: {spec.name}",
            f"{spec.help}. Files under `apps/{spec.name}/`.\n\n`summary.json`: {summary_line(result.summary)}\n\n"
            + result.section,
        )

    return run


for _name, _spec in load_apps().items():
    stage(f"apps-{_name}")(_stage(_spec))

"""Demo stages `apps-<name>`: every registered application on the organism and the bundled suite (or, with
`--full`, the suite the train stage made); files under `<out>/apps/<name>`.

The stages are made from the applications' registry (`qwen3_scope.apps`), in its order, so an application is
written once. Sizes: the application's demo overrides (`AppSpec.demo`, what `--full` runs), then the quick
demo's `app_sizes` on top.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qwen3_scope.apps import APPS, AppSpec, summary_line, write_outputs
from qwen3_scope.apps.runs import RUNS
from qwen3_scope.demo.state import COMPUTED, DemoState


def app_config(spec: AppSpec, state: DemoState) -> Any:
    """The application's config at the demo's sizes, on the demo's model and suite."""
    sizes = {**spec.demo, **(state.config.app_sizes or {}).get(spec.name, {})}
    suite_dir = str(state.suite_dir) if state.suite_dir is not None else None
    return spec.config(model=state.model, suite_dir=suite_dir, **sizes)


def app_stage(spec: AppSpec) -> Callable[[DemoState], None]:
    def run(state: DemoState) -> None:
        config = app_config(spec, state)
        result = RUNS[spec.name](config)
        out = state.out_dir / "apps" / spec.name
        write_outputs(result, out, config)
        state.app_summaries[spec.name] = result.summary
        quick = (state.config.app_sizes or {}).get(spec.name)
        sizes = (
            "the quick demo's sizes (enough to show it works; the README's results come from `--full`)"
            if quick
            else "the application's demo sizes"
        )
        state.section(
            f"Application: {spec.name}",
            f"{spec.help}. Files under `apps/{spec.name}/` (`summary.json` records the config).\n\n"
            f"`summary.json`: {summary_line(result.summary)}\n\n" + result.section,
            numbers=f"{COMPUTED} at {sizes}, with the SAEs of {state.suite_source()}",
        )

    run.__name__ = f"apps_{spec.name.replace('-', '_')}_stage"
    return run


# (stage name, stage) for every registered application, in the registry's order.
APP_STAGES: list[tuple[str, Callable[[DemoState], None]]] = [
    (f"apps-{name}", app_stage(spec)) for name, spec in APPS.items()
]

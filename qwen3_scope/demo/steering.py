"""Demo stage `steer`: the refusal case study and language steering on the organism's SAE suite.

Uses the suite an earlier stage trained (`ctx.results["suite_dir"]`), else the bundled organism suite
of the `qwen3-instruct-sae` release; writes CSV/PNG/Markdown under `<out>/steer` and two report sections.
"""

from __future__ import annotations

from qwen3_scope.demo.run import DemoContext, stage


@stage("steer")
def steer_stage(ctx: DemoContext) -> None:
    from qwen3_scope.model.loading import load_model, model_spec
    from qwen3_scope.steering.discovery import load_suite
    from qwen3_scope.steering.language import (
        LanguageStudyConfig,
        language_section,
        run_language_study,
        write_language_study,
    )
    from qwen3_scope.steering.refusal import (
        DEFAULT_RELEASE,
        RefusalStudyConfig,
        refusal_section,
        run_refusal_study,
        write_refusal_study,
    )

    out = ctx.out_dir / "steer"
    model = load_model(ctx.model, backend="hooked")
    suite_dir = ctx.results.get("suite_dir")
    saes = load_suite(suite_dir, DEFAULT_RELEASE, None, model_spec(model).key)
    source = f"suite `{suite_dir}`" if suite_dir else f"release `{DEFAULT_RELEASE}` (bundled organism suite)"

    refusal = run_refusal_study(RefusalStudyConfig(model=ctx.model), model=model, saes=saes)
    refusal_paths = write_refusal_study(refusal, out)  # its own .md links the plot beside it
    language = run_language_study(LanguageStudyConfig(model=ctx.model), model=model, saes=saes)
    language_paths = write_language_study(language, out)
    ctx.results["steer"] = {
        "refusal": refusal.summary,
        "language": language.summary,
        "refusal_base": refusal.base,
        "paths": {
            **{f"refusal_{k}": v for k, v in refusal_paths.items()},
            **{f"language_{k}": v for k, v in language_paths.items()},
        },
    }
    ctx.section(
        "Steering: refusal case study",
        f"SAEs from {source}. Tables: `steer/refusal_*.csv`.\n\n" + refusal_section(refusal, "steer/refusal_sweep.png"),
    )
    ctx.section(
        "Steering: answer language",
        "Tables: `steer/language_*.csv`.\n\n" + language_section(language, "steer/language_sweep.png"),
    )

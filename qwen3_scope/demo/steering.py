"""Demo stage `steer`: the refusal case study and language steering on the organism's SAE suite.

Uses the suite the train stage made with `--full` (`state.suite_dir`), else the bundled organism suite of the
`qwen3-instruct-sae` release; writes CSV/PNG/Markdown under `<out>/steer` and two report sections.
"""

from __future__ import annotations

from qwen3_scope.demo.state import COMPUTED, DemoState, SteerSummaries
from qwen3_scope.model.loading import load_model, model_spec
from qwen3_scope.naming import RELEASE
from qwen3_scope.steering.discovery import load_suite
from qwen3_scope.steering.language import (
    LanguageStudyConfig,
    language_section,
    run_language_study,
    write_language_study,
)
from qwen3_scope.steering.refusal import (
    RefusalStudyConfig,
    refusal_section,
    run_refusal_study,
    write_refusal_study,
)


def steer_stage(state: DemoState) -> None:
    cfg = state.config
    out = state.out_dir / "steer"
    model = load_model(state.model, backend="hooked")
    suite_dir = state.suite_dir
    saes = load_suite(suite_dir, RELEASE, None, model_spec(model).key)
    source = f"suite `{suite_dir}`" if suite_dir else f"release `{RELEASE}` (bundled organism suite)"
    sizes = RefusalStudyConfig(
        model=state.model,
        n_discover=cfg.steer_prompts,
        n_eval=cfg.steer_prompts,
        screen=cfg.steer_screen,
        alphas=tuple(cfg.steer_alphas),
    )
    refusal = run_refusal_study(sizes, model=model, saes=saes)
    refusal_paths = write_refusal_study(refusal, out)  # its own .md links the plot beside it
    language_cfg = LanguageStudyConfig(
        model=sizes.model, n_discover=sizes.n_discover, n_eval=sizes.n_eval, screen=sizes.screen, alphas=sizes.alphas
    )
    language = run_language_study(language_cfg, model=model, saes=saes)
    language_paths = write_language_study(language, out)
    state.steer = SteerSummaries(
        refusal=refusal.summary,
        language=language.summary,
        refusal_base=refusal.base,
        paths={
            **{f"refusal_{k}": v for k, v in refusal_paths.items()},
            **{f"language_{k}": v for k, v in language_paths.items()},
        },
    )
    numbers = (
        f"{COMPUTED}, {cfg.steer_prompts} prompts per class, {cfg.steer_screen} latents screened, alphas "
        f"{', '.join(f'{a:g}' for a in cfg.steer_alphas)}, with the SAEs of {state.suite_source()}"
    )
    state.section(
        "Steering: refusal case study",
        f"SAEs from {source}. Tables: `steer/refusal_*.csv`.\n\n" + refusal_section(refusal, "steer/refusal_sweep.png"),
        numbers=numbers,
    )
    state.section(
        "Steering: answer language",
        "Tables: `steer/language_*.csv`.\n\n" + language_section(language, "steer/language_sweep.png"),
        numbers=numbers,
    )

"""Feature steering for Qwen3: interventions during generation, feature discovery, refusal and language studies.

`interventions` (add/ablate directions, clamp/scale SAE latents with the error term kept, position-aware
under KV-cached generation) -> `generation` (batched greedy generation, completion CE) -> `discovery`
(contrast two prompt sets through a suite) -> `sweep` (screening, alpha sweeps, coherence) -> `refusal`
and `language` (the two studies) -> `plots`, `cli` (`qwen3-scope steer ...`), `demo_stage` (`steer`).

This package's `__init__` imports nothing: `qwen3-scope --help` reads config modules below it without
loading torch. Import names from the module that defines them.
"""

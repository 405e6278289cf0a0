"""The main job (top layer): an explicit, ordered list of stages over the library (`run.STAGES`), with a typed
state passed between them (`state.DemoState`) and one config (`config.DemoConfig`: the quick demo by default,
`full=True` for the README's tables). Nothing in the library imports it.

This package's `__init__` and `config` import nothing heavy (the CLI builds `qwen3-scope demo`'s options from
`DemoConfig`); `run` imports every stage.
"""

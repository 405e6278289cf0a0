"""Suite evaluation: every SAE of a suite through SAELens' run_evals on shared held-out tokens, one table.

Modules: held_out (token batches), shared_forward (one clean pass per batch for the whole suite),
suite_eval (loading, checks, metrics, table, yaml write-back), plots, report (HTML), cli, demo_stage.

This package's `__init__` imports nothing: `qwen3-scope --help` reads config modules below it without
loading torch. Import names from the module that defines them.
"""

"""Suite training: config, recipes, planner, the suite trainer, its manifest, distribution and data
parallelism; each module holds one job.

This package's `__init__` imports nothing: `qwen3-scope --help` reads config modules below it without
loading torch. Import names from the module that defines them.
"""

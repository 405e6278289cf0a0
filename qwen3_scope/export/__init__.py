"""Publishing a suite: Neuronpedia-style feature dashboards (SAEDashboard's batch format and Neuronpedia's
bulk-import layout), an offline dashboard viewer, and the Hugging Face upload with its release entry.

Why native: SAEDashboard pins TransformerLens < 3 and cannot be installed beside SAELens 6.54 and
TransformerLens 3.9, so on the current stack a Qwen3 researcher had no way to produce Neuronpedia data.

This package's `__init__` imports nothing: `qwen3-scope --help` reads config modules below it without
loading torch. Import names from the module that defines them.
"""

"""Publishing a suite: Neuronpedia-style feature dashboards (SAEDashboard's batch format and Neuronpedia's
bulk-import layout), an offline dashboard viewer, and the Hugging Face upload with its release entry.

Why native: SAEDashboard pins TransformerLens < 3 and cannot be installed beside SAELens 6.54 and
TransformerLens 3.9, so on the current stack a Qwen3 researcher had no way to produce Neuronpedia data.
"""

from qwen3_scope.export.config import ExportConfig
from qwen3_scope.export.job import run_export

__all__ = ["ExportConfig", "run_export"]

"""`import qwen3_scope` registers releases, loaders and SAE classes, idempotently, and changes nothing else.

Each check runs in a fresh interpreter, snapshotting process-wide registries before and after the import.
"""

from __future__ import annotations

import json
import subprocess
import sys

SNAPSHOT = r"""
import json, logging, sys, warnings
import torch
from torch.optim import optimizer as opt
import torch.nn.modules.module as mod
import sae_lens.loading.pretrained_sae_loaders as loaders
import sae_lens.registry as registry

def snap():
    return {
        "optimizer_pre_hooks": len(opt._global_optimizer_pre_hooks),
        "optimizer_post_hooks": len(opt._global_optimizer_post_hooks),
        "module_hooks": [len(getattr(mod, n)) for n in dir(mod) if n.startswith("_global_") and n.endswith("hooks")],
        "threads": torch.get_num_threads(),
        "default_dtype": str(torch.get_default_dtype()),
        "grad_enabled": torch.is_grad_enabled(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "warning_filters": len(warnings.filters),
        "root_log_level": logging.getLogger().level,
        "root_handlers": len(logging.getLogger().handlers),
        "sae_lens_log_level": logging.getLogger("sae_lens").level,
        "loaders": sorted(loaders.NAMED_PRETRAINED_SAE_LOADERS),
        "config_getters": sorted(loaders.NAMED_PRETRAINED_SAE_CONFIG_GETTERS),
        "sae_classes": sorted(registry.SAE_CLASS_REGISTRY),
        "training_classes": sorted(registry.SAE_TRAINING_CLASS_REGISTRY),
        "rng": torch.random.get_rng_state().sum().item(),
    }

before = snap()
import qwen3_scope
after = snap()
qwen3_scope.register(); qwen3_scope.register()
again = snap()
print(json.dumps({"before": before, "after": after, "again": again}))
"""


def run_snapshot() -> dict:
    out = subprocess.run([sys.executable, "-c", SNAPSHOT], capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_adds_only_registrations_and_leaves_torch_globals_alone():
    snap = run_snapshot()
    before, after = snap["before"], snap["after"]
    assert after["optimizer_pre_hooks"] == 0 and after["optimizer_post_hooks"] == 0
    registered = {"loaders", "config_getters", "sae_classes", "training_classes"}
    for key in before.keys() - registered:
        assert after[key] == before[key], key
    assert set(after["loaders"]) - set(before["loaders"]) == {"qwen3_scope"}
    assert set(after["config_getters"]) - set(before["config_getters"]) == {"qwen3_scope"}
    transcoders = {"topk_transcoder", "topk_skip_transcoder"}  # SAELens has the other four transcoder inference classes
    assert set(after["sae_classes"]) - set(before["sae_classes"]) == {"topk_fast", "jumprelu_fast", *transcoders}
    assert set(after["training_classes"]) - set(before["training_classes"]) == {
        "topk_fast",
        "jumprelu_fast",
        "transcoder",
        "skip_transcoder",
        "jumprelu_transcoder",
        "jumprelu_skip_transcoder",
        *transcoders,
    }
    assert snap["again"] == after  # registering again changes nothing


def test_plain_import_command_leaves_optimizer_hooks_empty():
    code = (
        "import torch, qwen3_scope; from torch.optim import optimizer as o; "
        "print(len(o._global_optimizer_pre_hooks), len(o._global_optimizer_post_hooks))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["0", "0"]


def test_only_the_console_script_defers_the_registration():
    """Importing the launcher module is not enough: `import qwen3_scope` registers unless `qwen3_scope_cli.main()` runs
    in this very process. When it defers, the first public name completes the import, registration included."""
    code = (
        "import sys, qwen3_scope_cli, qwen3_scope\n"
        "import sae_lens.loading.pretrained_sae_loaders as loaders\n"
        "print('qwen3_scope' in loaders.NAMED_PRETRAINED_SAE_LOADERS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["True"]
    deferred = (
        "import sys, qwen3_scope_cli\n"
        "qwen3_scope_cli.starting = True  # what its main() sets first\n"
        "import qwen3_scope\n"
        "print(sorted(m for m in ('torch', 'sae_lens', 'transformers') if m in sys.modules))\n"
        "qwen3_scope.load_model  # any public name completes the import\n"
        "import sae_lens.loading.pretrained_sae_loaders as loaders, sae_lens.registry as registry\n"
        "print('qwen3_scope' in loaders.NAMED_PRETRAINED_SAE_LOADERS, 'topk_fast' in registry.SAE_CLASS_REGISTRY)\n"
    )
    out = subprocess.run([sys.executable, "-c", deferred], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.splitlines() == ["[]", "True True"]

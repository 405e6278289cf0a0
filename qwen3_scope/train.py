"""`python -m qwen3_scope.train`: one rank of a distributed suite training, for torchrun.

    torchrun --nproc-per-node 8 -m qwen3_scope.train --model Qwen/Qwen3-4B --out /shared/suites/4b
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m qwen3_scope.train --model Qwen/Qwen3-4B --out /shared/suites/4b

Takes the same options as `qwen3-scope train` (it is what `qwen3-scope train --nproc N` runs). Every rank
parses the same options; rank 0 prints the plan, the parallelism the planner chose and the metrics. A rank
that fails logs its rank and error and exits non-zero; torchrun then stops the other ranks (and, with
`--max-restarts`, restarts the job, which resumes from the last checkpoints).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

logger = logging.getLogger("qwen3_scope.train")


def build_parser() -> argparse.ArgumentParser:
    from qwen3_scope.core.config_cli import add_config_arguments
    from qwen3_scope.training.config import SuiteTrainingConfig

    parser = argparse.ArgumentParser(
        prog="python -m qwen3_scope.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, SuiteTrainingConfig)
    return parser


def run_rank(config: Any, ctx: Any, **library: Any) -> Any:
    """Train `config` as this rank of `ctx` (a `DistContext`); returns the SuiteResult. Errors name the rank.
    `library`: train_suite's library-only arguments (e.g. `on_checkpoint`)."""
    from qwen3_scope.training.suite import train_suite

    try:
        if ctx.distributed:
            config = config.replace(
                device=ctx.device(config.device), sae_device=ctx.device(config.sae_device), nproc=None
            )
        return train_suite(config, dist_context=ctx, progress=ctx.is_main, **library)
    except BaseException as err:
        logger.error("rank %d of %d failed: %s: %s", ctx.rank, ctx.world_size, type(err).__name__, err)
        print(
            f"qwen3-scope train: rank {ctx.rank} of {ctx.world_size} failed: {type(err).__name__}: {err}",
            file=sys.stderr,
            flush=True,
        )
        raise


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import record

    from qwen3_scope.core.config_cli import config_from_args
    from qwen3_scope.training.cli import print_result
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.distributed import DistContext

    @record  # torchrun's error file: the launcher's summary names the rank and its exception
    def _main() -> int:
        args = build_parser().parse_args(argv)
        try:
            config = config_from_args(SuiteTrainingConfig, args)
            ctx = DistContext.from_environment(config.device, config.collective_timeout)
        except ValueError as err:
            print(f"qwen3-scope train: error: {err}", file=sys.stderr)
            return 2
        try:
            if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:  # torchrun --max-restarts: continue
                config = config.replace(resume=True)
            if config.threads:
                import torch

                torch.set_num_threads(config.threads)
            if ctx.is_main and ctx.distributed:
                planned = run_rank(config.replace(plan_only=True), ctx)
                print(planned.plan.summary())
                print(planned.parallel.summary(), flush=True)
            elif ctx.distributed:
                run_rank(config.replace(plan_only=True), ctx)
            result = run_rank(config, ctx)
            if ctx.is_main:
                print_result(result)
        finally:
            ctx.shutdown()
        return 0

    return int(_main() or 0)


if __name__ == "__main__":
    sys.exit(main())

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
import os
import sys

from torch.distributed.elastic.multiprocessing.errors import record

from qwen3_scope.core.config_cli import add_config_arguments, config_from_args
from qwen3_scope.core.errors import Qwen3ScopeError
from qwen3_scope.core.threads import configure_threads
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.process_group import DistContext
from qwen3_scope.training.suite import run_rank

__all__ = ["build_parser", "main", "run_rank"]  # run_rank lives in training.suite; re-exported for torchrun users


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qwen3_scope.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, SuiteTrainingConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    @record  # torchrun's error file: the launcher's summary names the rank and its exception
    def _main() -> int:
        args = build_parser().parse_args(argv)
        try:
            config = config_from_args(SuiteTrainingConfig, args)
            ctx = DistContext.from_environment(config.device, config.collective_timeout)
        except (Qwen3ScopeError, ValueError) as err:
            print(f"qwen3-scope train: error: {err}", file=sys.stderr)
            return 2
        try:
            if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:  # torchrun --max-restarts: continue
                config = config.replace(resume=True)
            configure_threads(config.threads)  # --threads, OMP_NUM_THREADS, or this rank's share of the cores
            spec = None
            if ctx.distributed:  # every rank plans (bad input fails before training); rank 0 prints the plan
                planned = run_rank(config.replace(plan_only=True), ctx)
                spec = planned.plan.suite.spec  # the model, resolved once per rank
                if ctx.is_main and planned.parallel is not None:
                    print(planned.plan.summary())
                    print(planned.parallel.summary(), flush=True)
            result = run_rank(config, ctx, spec=spec)
            if ctx.is_main:
                print(result.report())
        finally:
            ctx.shutdown()
        return 0

    return int(_main() or 0)


if __name__ == "__main__":
    sys.exit(main())

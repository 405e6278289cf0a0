"""Distributed suite training on real torch.distributed processes: 2 spawned gloo ranks, file:// rendezvous,
1 thread each, on the model organism with tiny token counts.

(a) group parallelism gives SAEs bit-identical to the 1-process run; (b) data parallelism equals the 1-process
run on the same global batch (float64, 1e-10), and so does the fast JumpReLU class with its dead-latent reopening
(float32, 1e-3); (c) a 2-rank run killed half-way resumes with 2 and with 1
rank to the uninterrupted SAEs; (d) a rank that raises ends the job non-zero within 60 s, naming the rank.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import suite_for

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
        reason="this torch has no gloo backend",
    ),
]

# 4 SAEs (layers 0-1 x resid_post/mlp_out) in one planned group, 6 steps of 1024 tokens, a checkpoint every 2 steps
SUITE = dict(
    model="organism",
    layers=[0, 1],
    sites=["resid_post", "mlp_out"],
    training_tokens=6144,
    checkpoint_every_tokens=2048,
    threads=1,
    parallel="group",
    runner_overrides={"n_batches_for_norm_estimate": 2},
)


def _rank(
    rank: int,
    world: int,
    rendezvous: str,
    settings: dict,
    die_on_checkpoint: int | None,
    raise_on_checkpoint: int | None,
) -> None:
    """One spawned rank: join the gloo group and train the suite (optionally killed or failing at a checkpoint)."""
    torch.set_num_threads(1)
    from qwen3_scope.train import run_rank
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.distributed import DistContext

    config = SuiteTrainingConfig(**settings)
    ctx = DistContext.initialise(rank, world, rendezvous, device="cpu", timeout_seconds=60)

    seen = []

    def on_checkpoint(group: int, step: int) -> None:  # the library's checkpoint hook
        seen.append(step)
        # group mode: rank 1 writes its own checkpoint first; data mode: rank 0 writes them, and rank 1 is
        # sure checkpoint 1 is complete only once the steps after it ran
        if rank == die_on_checkpoint and len(seen) == (2 if settings.get("parallel") == "data" else 1):
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no exception
        if rank == raise_on_checkpoint:
            (Path(settings["out"]).parent / "failed_at").write_text(str(time.time()))
            raise RuntimeError(f"injected failure in group {group} at step {step}")

    try:
        run_rank(config, ctx, on_checkpoint=on_checkpoint)
    finally:
        ctx.shutdown()


def spawn(
    tmp: Path,
    settings: dict,
    world: int = 2,
    die_on_checkpoint: int | None = None,
    raise_on_checkpoint: int | None = None,
    start_method: str = "forkserver",
) -> None:
    rendezvous = tmp / f"rendezvous-{time.monotonic_ns()}"
    # Fresh processes from a fork server that imported the training stack once for this test worker: each rank is a
    # new process (no state of the test process, no torch threads forked), without paying the ~7 s import again. The
    # fork server's stderr is the one it started with, so a test reading the ranks' stderr spawns them instead.
    multiprocessing.set_forkserver_preload(["qwen3_scope.train", "qwen3_scope.training.distributed"])
    torch.multiprocessing.start_processes(
        _rank,
        args=(world, f"file://{rendezvous}", settings, die_on_checkpoint, raise_on_checkpoint),
        nprocs=world,
        join=True,
        start_method=start_method,
    )


def one_process(settings: dict):
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    return train_suite(SuiteTrainingConfig(**settings), progress=False)


def sae_tensors(suite_dir: Path, sae_id: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for name in ("sae_weights.safetensors", "sparsity.safetensors"):
        out.update({f"{name}:{k}": v for k, v in load_file(suite_dir / sae_id / name).items()})
    return out


def sae_ids(suite_dir: Path) -> list[str]:
    import json

    return list(json.loads((suite_dir / "manifest.json").read_text())["saes"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted 1-process suite (one group of 4 SAEs)."""
    out = tmp_path_factory.mktemp("one") / "suite"
    result = one_process({**SUITE, "out": str(out)})
    assert len(result.plan.groups) == 1 and result.manifest["status"] == "complete"
    return out


def assert_bit_identical(a: Path, b: Path) -> None:
    assert sae_ids(a) == sae_ids(b)
    for sae_id in sae_ids(a):
        x, y = sae_tensors(a, sae_id), sae_tensors(b, sae_id)
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), f"{sae_id} {key} differs by {(x[key] - y[key]).abs().max().item()}"


# ------------------------------------------------------------------------------------------------- (a)
def test_group_parallel_two_ranks_equal_one_process(reference, tmp_path):
    import json

    out = tmp_path / "suite"
    spawn(tmp_path, {**SUITE, "out": str(out)})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    parallel = manifest["parallel"]
    assert parallel["mode"] == "group" and parallel["world_size"] == 2
    assert sorted(parallel["assignment"].values()) == [0, 1]  # the one planned group re-cut: one group per rank
    assert [g["status"] for g in manifest["groups"]] == ["done", "done"]
    assert set(manifest["metrics"]) == set(sae_ids(reference))
    assert not (out / ".ranks").exists() and not (out / ".checkpoints").exists()
    assert_bit_identical(reference, out)


def test_qwen3_scope_train_nproc_launches_torchrun_and_equals_one_process(reference, tmp_path):
    """The command line: `qwen3-scope train --nproc 2` runs torch.distributed.run (torchrun) with 2 ranks."""
    import subprocess
    import sys

    import yaml

    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SUITE.items() if k != "threads"}))
    out = tmp_path / "suite"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwen3_scope.cli",
            "train",
            "--config",
            str(config),
            "--nproc",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parallelism: group over 2 rank(s)" in done.stdout and "suite written to" in done.stdout
    assert_bit_identical(reference, out)


# ------------------------------------------------------------------------------------------------- (b)
# SAELens' own TopK class (the fast classes compute in bfloat16 on CPUs that have it)
DATA_PARALLEL = dict(
    SUITE,
    recipe="qwen-scope",
    layers=[1],
    sites=["resid_post", "mlp_out"],
    parallel="data",
    fast=False,
    runner_overrides={
        "dtype": "float64",
        "dead_feature_window": 2,
        "feature_sampling_window": 3,
        "n_batches_for_norm_estimate": 2,
    },
)


@pytest.fixture(scope="module")
def data_parallel_two_ranks(tmp_path_factory) -> Path:
    """TopK with AuxK active (dead window of 2 steps), float64, 2 ranks each reading one of 2 data shards."""
    folder = tmp_path_factory.mktemp("dp2")
    spawn(folder, {**DATA_PARALLEL, "out": str(folder / "suite")})
    return folder / "suite"


def max_difference(a: Path, b: Path) -> float:
    worst = 0.0
    assert sae_ids(a) == sae_ids(b)
    for sae_id in sae_ids(a):
        x, y = sae_tensors(a, sae_id), sae_tensors(b, sae_id)
        for key in x:
            assert torch.equal(torch.isfinite(x[key]), torch.isfinite(y[key]))  # log-sparsity is -inf where dead
            diff = (x[key].double() - y[key].double()).abs()
            diff = diff[torch.isfinite(diff)]
            worst = max(worst, diff.max().item() if diff.numel() else 0.0)
    return worst


def test_data_parallel_two_ranks_equal_one_process_on_the_same_global_batch(data_parallel_two_ranks, tmp_path):
    """Gradients, firing counts, norm scaling and schedules agree: 1e-10 in float64 after 6 steps."""
    import json

    one_process({**DATA_PARALLEL, "data_shards": 2, "out": str(tmp_path / "dp1")})
    assert load_dtype(tmp_path / "dp1") == torch.float64
    assert max_difference(tmp_path / "dp1", data_parallel_two_ranks) < 1e-10
    manifest = json.loads((data_parallel_two_ranks / "manifest.json").read_text())
    assert manifest["parallel"]["mode"] == "data" and manifest["parallel"]["data_shards"] == 2


def load_dtype(suite_dir: Path) -> torch.dtype:
    from safetensors.torch import load_file

    return load_file(suite_dir / sae_ids(suite_dir)[0] / "sae_weights.safetensors")["W_dec"].dtype


def test_fast_jumprelu_reopening_decides_from_every_rank(tmp_path):
    """The fast JumpReLU class reopens latents silent for `reopen_window` steps from the step's firing and quantiles:
    on 2 ranks it reads both halves of the batch, so (in float32) the 2-rank run stays with the one-process run on the
    same global batches. Measured: 7e-7 relative here with the shared decision, 0.48 when each rank reopened from its
    own half (the ranks' SAEs parted; the saved one lost EV: benchmarks/bench_dp_quality.py)."""
    settings = dict(
        SUITE,
        layers=[1],
        sites=["resid_post"],
        parallel="data",
        fast=True,
        sae_fields=[("compute_dtype", "float32"), ("reopen_window", 1)],
    )
    spawn(tmp_path, {**settings, "out": str(tmp_path / "dp2")})
    result = one_process({**settings, "data_shards": 2, "out": str(tmp_path / "dp1")})
    assert result.manifest["status"] == "complete"
    worst = 0.0
    for sae_id in sae_ids(tmp_path / "dp1"):
        x, y = sae_tensors(tmp_path / "dp1", sae_id), sae_tensors(tmp_path / "dp2", sae_id)
        for key in ("sae_weights.safetensors:W_enc", "sae_weights.safetensors:b_enc"):
            worst = max(worst, ((x[key] - y[key]).norm() / x[key].norm()).item())
    assert worst < 1e-3, worst


# ------------------------------------------------------------------------------------------------- (c)
def test_resume_across_world_sizes(reference, tmp_path):
    """Rank 1 is killed (SIGKILL) at its first checkpoint; the suite then resumes with 2 ranks and with 1."""
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Exception, match="(?i)signal|exit"):
        spawn(tmp_path, {**SUITE, "out": str(interrupted)}, die_on_checkpoint=1)
    checkpoints = list((interrupted / ".checkpoints").glob("group_*/step_*"))
    assert checkpoints, "the killed run left no checkpoint"
    for world in (2, 1):
        copy = tmp_path / f"resumed_{world}"
        shutil.copytree(interrupted, copy)
        settings = {**SUITE, "out": str(copy), "resume": True}
        if world == 2:
            spawn(tmp_path, settings)
        else:
            one_process(settings)
        assert_bit_identical(reference, copy)


def test_data_parallel_checkpoint_resumes_on_one_rank(data_parallel_two_ranks, tmp_path):
    """A 2-rank data-parallel run killed at its first checkpoint resumes in 1 process (both shards) and ends
    where the uninterrupted 2-rank run ends."""
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Exception, match="(?i)signal|exit"):
        spawn(tmp_path, {**DATA_PARALLEL, "out": str(interrupted)}, die_on_checkpoint=1)
    assert list((interrupted / ".checkpoints").glob("group_*/step_*"))
    one_process({**DATA_PARALLEL, "out": str(interrupted), "resume": True})
    assert max_difference(interrupted, data_parallel_two_ranks) < 1e-10


# A torchrun rank: `python -m qwen3_scope.train` with train_suite's on_checkpoint hook, which on the first attempt
# says when the rank's first checkpoint is on disk and waits there (the test kills a rank then); the restarted ranks
# (TORCHELASTIC_RESTART_COUNT 1) train through. Nothing waits for time to pass.
TORCHRUN_RANK = """
import functools, os, sys, threading
import qwen3_scope.training.suite as suite

def wait_for_the_kill(group, step):
    print(f"rank {os.environ['RANK']}: checkpoint written", flush=True)
    threading.Event().wait()


@functools.wraps(suite.train_suite)
def train_suite(*args, on_checkpoint=None, **kwargs):
    return train(*args, on_checkpoint=on_checkpoint or wait_for_the_kill, **kwargs)


if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
    train, suite.train_suite = suite.train_suite, train_suite
from qwen3_scope.train import main  # after the hook: the rank calls the wrapped train_suite

sys.exit(main())
"""


def test_torchrun_max_restarts_restarts_and_resumes(reference, tmp_path):
    """A worker killed (SIGKILL) after the first checkpoint: torchrun restarts both ranks, they resume."""
    import json
    import subprocess
    import sys

    import yaml

    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SUITE.items() if k != "threads"}))
    out = tmp_path / "suite"
    rank_script = tmp_path / "rank.py"
    rank_script.write_text(TORCHRUN_RANK)
    stderr_file = tmp_path / "stderr.txt"
    with stderr_file.open("w") as stderr:  # a file: no process blocks on a full pipe
        job = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                "2",
                "--max-restarts",
                "1",
                str(rank_script),
                "--config",
                str(config),
                "--threads",
                "1",
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    try:
        waiting = set()
        for line in job.stdout:  # the ranks' stdout (torchrun passes it through); ends if the job exits
            if line.endswith(": checkpoint written\n"):
                waiting.add(line.split(":")[0])
                if len(waiting) == 2:
                    break
        assert waiting == {"rank 0", "rank 1"}, stderr_file.read_text()[-3000:]
        workers = Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split()
        assert len(workers) == 2, workers
        os.kill(int(workers[-1]), signal.SIGKILL)
        job.communicate(timeout=600)
    finally:
        if job.poll() is None:  # a failed assertion above: end torchrun (it ends its ranks)
            job.terminate()
            job.communicate(timeout=120)
    err = stderr_file.read_text()
    assert job.returncode == 0, err[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert any(g["resumed_from_step"] > 0 for g in manifest["groups"])  # the restarted ranks resumed
    assert_bit_identical(reference, out)


# ------------------------------------------------------------------------------------------------- (d)
def test_a_failing_rank_ends_the_job_quickly_and_names_itself(tmp_path, capfd):
    """Data parallelism, so rank 0 is inside a collective when rank 1 raises."""
    settings = dict(SUITE, layers=[0], sites=["resid_post"], parallel="data", out=str(tmp_path / "fail"))
    with pytest.raises(Exception) as err:
        spawn(tmp_path, settings, raise_on_checkpoint=1, start_method="spawn")  # its stderr is read below
    elapsed = time.time() - float((tmp_path / "failed_at").read_text())
    assert elapsed < 60, f"the job took {elapsed:.0f} s to end after rank 1 failed"
    text = str(err.value) + capfd.readouterr().err
    assert "rank 1 of 2 failed: RuntimeError: injected failure" in text


# ------------------------------------------------------------------------------------------------- planning, bad input
def _plan(**kwargs):
    from qwen3_scope.model.chat import special_token_ids
    from qwen3_scope.model.loading import load_tokenizer
    from qwen3_scope.training.planner import plan_suite

    ids = special_token_ids(load_tokenizer("organism"))
    return plan_suite(
        suite_for("organism", kwargs.pop("recipe", "paper"), special_token_ids=ids, **kwargs),
        memory_budget_gb=8,
        matmul_flops=1e11,
    )


def load_model_spec_layers() -> int:
    from qwen3_scope.model.family import resolve_model

    return resolve_model("organism").n_layers


def test_planner_spreads_groups_longest_first_and_recuts_for_more_ranks():
    from qwen3_scope.training.parallel_plan import choose, group_seconds, lpt_assignment

    assert lpt_assignment({0: 5.0, 1: 4.0, 2: 3.0, 3: 3.0, 4: 2.0}, 2) == {0: 0, 1: 1, 2: 1, 3: 0, 4: 1}
    plan = _plan()  # the organism's every layer x 3 sites: one group
    n_saes = 3 * load_model_spec_layers()
    assert len(plan.groups) == 1 and len(plan.groups[0].jobs) == n_saes
    chosen = choose(plan, 4, "group")
    assert len(chosen.plan.groups) == 4 and sorted(chosen.assignment.values()) == [0, 1, 2, 3]
    assert sum(len(g.jobs) for g in chosen.plan.groups) == n_saes
    busy = chosen.rank_seconds()
    assert max(busy) == pytest.approx(max(group_seconds(chosen.plan, g) for g in chosen.plan.groups))
    assert "parallelism: group over 4 rank(s)" in chosen.summary()
    auto = choose(plan, 2)
    assert auto.mode in ("group", "data") and "why:" in auto.summary()


def test_bad_parallel_input_is_a_clear_error_before_training(capsys):
    from qwen3_scope.cli import main
    from qwen3_scope.training.distributed import DistributedSetupError, check_devices
    from qwen3_scope.training.parallel_plan import ParallelPlanError, choose

    plan = _plan()
    n_saes = 3 * load_model_spec_layers()
    ranks = 32  # more ranks than SAEs, and 1000 tokens do not split over them
    assert ranks > n_saes and 1000 % ranks
    with pytest.raises(ParallelPlanError, match=f"only {n_saes} SAE"):
        choose(plan, ranks, "group")
    odd = _plan(runner_overrides={"train_batch_size_tokens": 1000})
    with pytest.raises(ParallelPlanError, match=f"not divisible by {ranks}"):
        choose(odd, ranks)  # neither group (too few SAEs) nor data (1000 tokens over 32 shards) parallelism
    qwen_scope = _plan(recipe="qwen-scope", layers=[0])  # one SAE, outlier filter: only data parallelism
    assert choose(qwen_scope, 2).mode == "data"
    with pytest.raises(ParallelPlanError, match="cannot share 4 shards evenly. Resume with 1 or 2 or 4"):
        choose(plan, 3, recorded={"mode": "data", "data_shards": 4})
    assert choose(plan, 1, recorded={"mode": "data", "data_shards": 2}).data_shards == 2  # 2 -> 1 rank: follows
    if torch.cuda.device_count() < 2:
        with pytest.raises(DistributedSetupError, match="need 2 GPUs"):
            check_devices("cuda", 2)
    with pytest.raises(DistributedSetupError, match="names one GPU"):
        check_devices("cuda:0", 2)
    code = main(["train", "--nproc", str(ranks), "--parallel", "group", "--plan-only", "--out", "unused"])
    assert code == 2 and f"only {n_saes} SAE(s) for {ranks} ranks" in capsys.readouterr().err

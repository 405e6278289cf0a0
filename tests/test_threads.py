"""configure_threads on real processes: an explicit request wins, then OMP_NUM_THREADS, then the cores the process
may use (its CPU affinity, set with os.sched_setaffinity in a child process), fewer when other work is running."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from qwen3_scope.core import threads
from qwen3_scope.core.errors import ConfigError, Qwen3ScopeError

# What the `qwen3-scope` console script does first: `qwen3_scope` then defers importing torch and SAELens, so the
# child starts in a fraction of a second and torch is loaded only by configure_threads (as in the CLI).
AS_THE_CLI = "import qwen3_scope_cli\nqwen3_scope_cli.starting = True\n"


def run_child(code: str, **env: str) -> str:
    """Run `code` in a fresh Python started as the CLI starts (no OMP_NUM_THREADS / OMP_WAIT_POLICY unless given)
    and return the last line of its stdout."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    child_env.update(env)
    script = AS_THE_CLI + textwrap.dedent(code)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=child_env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_request_wins_over_omp_num_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.configure_threads(1) == 1 and torch.get_num_threads() == 1
    assert threads.configure_threads(3) == 3 and torch.get_num_threads() == 3


def test_omp_num_threads_is_respected(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.configure_threads() == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1,4")  # an OpenMP list: the first level is torch's
    assert threads.configure_threads() == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_bad_omp_num_threads_is_one_clear_error(monkeypatch, bad):
    monkeypatch.setenv("OMP_NUM_THREADS", bad)
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS=.*positive whole number") as info:
        threads.configure_threads()
    assert isinstance(info.value, Qwen3ScopeError)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_request_is_one_clear_error(bad):
    with pytest.raises(ConfigError, match="whole number >= 1"):
        threads.configure_threads(bad)


def test_one_core_of_affinity_means_one_thread():
    """A child pinned to one core (as `taskset -c 0` would) takes 1 thread, whatever the host has."""
    line = run_child(
        """
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        from qwen3_scope.core import threads
        n = threads.configure_threads()
        import torch
        print(threads.available_cores(), n, torch.get_num_threads())
        """
    )
    assert line == "1 1 1"


def test_affinity_not_the_host_count_gives_the_cores():
    """Pinned to a subset of the host's cores (2 of them when it has more), the child takes that many threads: the
    host's run queue is not about those cores, so the busy rule does not apply."""
    if (os.cpu_count() or 1) < 3:
        pytest.skip("needs a host with 3 or more cores to pin a process to a proper subset of them")
    line = run_child(
        """
        import os
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
        from qwen3_scope.core import threads
        print(threads.available_cores(), threads.configure_threads())
        """
    )
    assert line == "2 2"


def test_available_cores_follow_the_affinity():
    line = run_child(
        """
        import os
        from qwen3_scope.core import threads
        full = threads.available_cores()
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
        print(full, threads.available_cores())
        """
    )
    full, pinned = map(int, line.split())
    assert pinned == 1 and full == min(len(os.sched_getaffinity(0)), full) and full >= 1


def test_omp_num_threads_wins_over_the_affinity():
    line = run_child(
        """
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        from qwen3_scope.core import threads
        import torch
        print(threads.configure_threads(), torch.get_num_threads())
        """,
        OMP_NUM_THREADS="2",
    )
    assert line == "2 2"


def test_busy_machine_gives_fewer_threads():
    assert threads.threads_for(2, 0) == 2
    assert threads.threads_for(2, 1) == 1  # a job started beside one other running task
    assert threads.threads_for(2, 5) == 1  # never fewer than one
    assert threads.threads_for(8, 3) == 5


def test_the_load_average_counts_only_where_openmp_threads_spin(monkeypatch):
    """With waiting threads that sleep (PASSIVE) the lagging 1-minute load average is not consulted; with any other
    policy, or none once torch (as in this process) has loaded OpenMP with its default, it is."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert threads._passive_wait_policy()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert not threads._passive_wait_policy()
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert not threads._passive_wait_policy()  # torch is imported here: its OpenMP keeps the spinning default


def test_passive_wait_policy_only_before_torch_loads():
    """Before torch is imported configure_threads makes OpenMP's waiting threads sleep; the user's choice is kept;
    after torch is imported it is no longer settable (libgomp read its environment when torch loaded it)."""
    fresh = """
        import os, sys
        from qwen3_scope.core import threads
        settable = threads.wait_policy_settable()
        threads.configure_threads(1)
        print(settable, os.environ.get("OMP_WAIT_POLICY"), threads.wait_policy_settable())
        """
    assert run_child(fresh).split() == ["True", "PASSIVE", "False"]
    assert run_child(fresh, OMP_WAIT_POLICY="ACTIVE").split() == ["True", "ACTIVE", "False"]
    late = "import torch\nfrom qwen3_scope.core import threads\nthreads.configure_threads(1)\n"
    assert run_child(late + 'import os\nprint(os.environ.get("OMP_WAIT_POLICY"))') == "None"


def test_cgroup_v2_quota_in_cores(tmp_path):
    """A cgroup v2 tree laid out as the kernel lays it out: the job's cgroup and a parent with a tighter quota."""
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    root = tmp_path / "fs"
    (root / "user.slice" / "job").mkdir(parents=True)
    (root / "user.slice" / "job" / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(root, proc) is None
    (root / "user.slice" / "job" / "cpu.max").write_text("250000 100000\n")
    assert threads.cgroup_cpu_limit(root, proc) == 2.5
    (root / "user.slice" / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v1_quota_in_cores(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    job = tmp_path / "fs" / "cpu,cpuacct" / "docker" / "abc"
    job.mkdir(parents=True)
    (job / "cpu.cfs_period_us").write_text("100000\n")
    (job / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(tmp_path / "fs", proc) is None
    (job / "cpu.cfs_quota_us").write_text("50000\n")
    assert threads.cgroup_cpu_limit(tmp_path / "fs", proc) == 0.5
    assert threads.cgroup_cpu_limit(tmp_path / "fs", tmp_path / "missing") is None


def test_this_process_cores_are_its_affinity_or_less():
    assert 1 <= threads.available_cores() <= len(os.sched_getaffinity(0))

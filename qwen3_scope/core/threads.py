"""How many threads torch's CPU work uses: chosen deliberately, once per job, by `configure_threads`.

Why: torch's default is one intra-op thread per core of the *host*, and its OpenMP runtime (GNU libgomp) lets a
thread that waits at a barrier spin for a while before it sleeps. Two such jobs on the same 2 cores each run 2
spinning threads: a thread spins while the thread it waits for is descheduled, and the work slows down ~20x
(a SASFT fine-tune measured ~20 s alone and ~450 s beside a second qwen3-scope process).

The rule, in order (the first that applies wins):

1. `requested` (a job's `--threads N`) when given;
2. `OMP_NUM_THREADS` when set (the first number of an OpenMP list such as `4,2`);
3. the cores this process may use (`available_cores`: its CPU affinity, capped by a cgroup CPU quota, v2 `cpu.max`
   or v1 `cpu.cfs_quota_us`; the host's core count only when neither is known), minus the cores other work already
   keeps busy when the machine is busy (`busy_cores`), never fewer than 1.

The busy rule (3) looks at the host's run queue: the number of tasks running right now (`/proc/loadavg`, the
smallest of three samples 20 ms apart, so that a passing blip does not count) and, when OpenMP's threads spin while
they wait (any policy but PASSIVE), the 1-minute load average. When that load average already reaches the available
cores, the job takes 1 thread (a spinning thread beside other work is what costs ~20x); otherwise it takes the cores
that no other running task holds. So two jobs started together on a quiet 2-core machine take 1 thread each
instead of fighting with 2 each, and a job started beside a running 2-thread job takes 1. With the PASSIVE policy
the load average (which lags by a minute: a job that just ended still counts) is not consulted, since an
oversubscribed core then costs little (measured in benchmarks/bench_side_by_side.py). The rule is applied only
when this process may use every core of the host: the host's run queue says nothing about a subset of its cores
(an affinity mask or a cgroup quota), and there the available cores are used. The choice is made once, when the
job starts; work that starts later on the machine does not change it.

The OpenMP wait policy: libgomp reads `OMP_WAIT_POLICY` (and `GOMP_SPINCOUNT`) once, when torch loads it, and
offers no call to change it afterwards. `configure_threads` therefore sets `OMP_WAIT_POLICY=PASSIVE` (waiting
threads sleep at once instead of spinning) only when torch has not been imported yet in this process and the user
has not set the variable; later in a process it can only choose the thread count (1 thread never waits at a
barrier). To get the passive policy in a process that imports torch first, set `OMP_WAIT_POLICY=PASSIVE` in its
environment (child processes inherit it). `wait_policy_settable()` says which case applies.

Importing this module does not import torch.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from qwen3_scope.core.errors import ConfigError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _own_cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """This process's cgroup directories (v1 cpu controller and v2), each followed by its parents."""
    dirs = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2
            base = root
        elif "cpu" in controllers.split(","):
            base = root / controllers if (root / controllers).is_dir() else root / "cpu"
        else:
            continue
        path = base / rel.lstrip("/")
        while True:  # a quota on a parent cgroup limits this one too
            dirs.append(path)
            if path == base or path.parent == path:
                break
            path = path.parent
    return dirs


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores (e.g. 1.5), or None when there is none (or no cgroup fs):
    the smallest quota of its cgroup and the cgroups above it (`root`: where the cgroup fs is mounted;
    `proc_cgroup`: the process's cgroup list)."""
    limits = []
    for directory in _own_cgroup_dirs(root, proc_cgroup):
        try:
            if (directory / "cpu.max").is_file():  # v2: "max 100000" or "150000 100000"
                quota, period = (directory / "cpu.max").read_text().split()[:2]
                if quota != "max" and int(period) > 0:
                    limits.append(int(quota) / int(period))
            elif (directory / "cpu.cfs_quota_us").is_file():  # v1: -1 means no quota
                quota_us = int((directory / "cpu.cfs_quota_us").read_text())
                period_us = int((directory / "cpu.cfs_period_us").read_text())
                if quota_us > 0 and period_us > 0:
                    limits.append(quota_us / period_us)
        except (OSError, ValueError):
            continue
    return min(limits) if limits else None


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by its cgroup's CPU quota (rounded up, at least 1)."""
    cores = _affinity_cores()
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _running_tasks() -> int | None:
    """Tasks in the host's run queue right now, this one included (`/proc/loadavg`'s fourth field)."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def busy_cores(cores: int, samples: int = 3, interval: float = 0.02, load_average: bool = True) -> int:
    """How many of `cores` other work keeps busy now: `cores` when `load_average` and the 1-minute load average
    reaches them, else the other running tasks (the smallest count of `samples` looks `interval` seconds apart).
    0 when unknown."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return 0
    if load_average and load1 >= cores:
        return cores
    counts = []
    for i in range(samples):
        if i:
            time.sleep(interval)  # spaced samples: a task that runs for an instant is not "busy"
        running = _running_tasks()
        if running is not None:
            counts.append(running - 1)  # this thread is running while it reads the file
    return max(0, min(counts)) if counts else 0


def threads_for(cores: int, busy: int) -> int:
    """The intra-op thread count for `cores` available cores of which `busy` are held by other work (at least 1)."""
    return max(1, min(cores, cores - busy))


def _omp_num_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not value:
        return None
    first = value.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ConfigError(
            f"OMP_NUM_THREADS={value!r} is not a positive whole number of threads; set it to e.g. 2, or unset it "
            "to let qwen3-scope use the cores this process may use."
        )
    return int(first)


def wait_policy_settable() -> bool:
    """True while OpenMP's wait policy can still be chosen in this process (torch, which loads libgomp, is not
    imported yet)."""
    return "torch" not in sys.modules


def choose_threads(requested: int | None = None) -> int:
    """The thread count `configure_threads` would set (see the module docstring for the rule); no side effects."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ConfigError(f"threads must be a whole number >= 1 (got {requested!r}); e.g. --threads 2.")
        return requested
    from_env = _omp_num_threads()
    if from_env is not None:
        return from_env
    cores = available_cores()
    if cores > 1 and cores >= (os.cpu_count() or cores):  # the run queue is the host's: only then is it ours
        return threads_for(cores, busy_cores(cores, load_average=not _passive_wait_policy()))
    return cores


def _passive_wait_policy() -> bool:
    """OpenMP's threads sleep when they wait: the user set OMP_WAIT_POLICY=PASSIVE, or configure_threads will set it
    (torch not loaded yet). Oversubscribed cores then cost little, and the lagging load average is not consulted."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().upper()
    return policy == "PASSIVE" or (not policy and wait_policy_settable())


def configure_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count for this job and return it: `requested` (`--threads`), else
    `OMP_NUM_THREADS`, else the cores this process may use, fewer when the machine is already busy. Before torch is
    imported it also makes OpenMP's waiting threads sleep instead of spin (`OMP_WAIT_POLICY=PASSIVE`, unless the
    user chose a policy). Call it once, when a job starts, before its heavy work."""
    threads = choose_threads(requested)
    if wait_policy_settable():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch  # lazy: keeps the CLI from importing torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads

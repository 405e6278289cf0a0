"""Two qwen3-scope jobs side by side: torch's default threads against `configure_threads` (issue 25).

The job is a SASFT-like fine-tune of the bundled organism (its real Qwen3 weights, 6 layers, d_model 160): AdamW on
a fixed batch of token ids, forward + backward + step, run in a worker process. For each threading mode the script
times the job alone, then two copies started together (both load first, then start their timed loops at the same
moment), and prints the ratio side-by-side time / alone time (the slower of the two copies).

Modes:
- `default`: what a process got before issue 25: torch's default intra-op threads (one per core of the host) and
  GNU OpenMP's default wait policy (a waiting thread spins before it sleeps).
- `configured`: `qwen3_scope.core.threads.configure_threads()` called before torch is imported, as the CLI does:
  the cores this process may use, fewer when the machine is busy, and `OMP_WAIT_POLICY=PASSIVE`.
- `passive`: torch's default thread count with `OMP_WAIT_POLICY=PASSIVE` only (what the wait policy alone does).
- `one`: 1 thread, OpenMP defaults (what the thread count alone does).

    python benchmarks/bench_side_by_side.py                       # all modes, 30 timed steps
    python benchmarks/bench_side_by_side.py --modes default configured --steps 60 --batch 16

Run it on a quiet machine for numbers about qwen3-scope alone (check `uptime`; the load average is printed at the
start and the end): on a machine that other work keeps busy, `configured` sees the load and takes 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MODES = ("default", "configured", "passive", "one")
OMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def worker(mode: str, steps: int, batch: int, context: int) -> None:
    """One job: load the organism, say `ready`, wait for `go` on stdin, time `steps` optimizer steps, print JSON."""
    if mode == "configured":
        import qwen3_scope_cli

        qwen3_scope_cli.starting = True  # as the console script: qwen3_scope defers torch until configure_threads
        from qwen3_scope.core.threads import configure_threads

        configure_threads()
    import torch
    from transformers import AutoModelForCausalLM

    from qwen3_scope.organism import ORGANISM_DIR

    if mode == "one":
        torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(ORGANISM_DIR), dtype=torch.float32)
    model.train()
    tokens = torch.randint(0, model.config.vocab_size, (batch, context))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up: allocator, OpenMP thread pool
        step()
    print("ready", flush=True)
    sys.stdin.readline()  # the driver's "go": the copies start their timed loops together
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "threads": torch.get_num_threads(),
                "wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            }
        ),
        flush=True,
    )


def run_copies(mode: str, copies: int, args: argparse.Namespace) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    if mode == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    argv = [sys.executable, __file__, "--worker", mode, "--steps", str(args.steps), "--batch", str(args.batch)]
    argv += ["--context", str(args.context)]
    procs = [
        subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(copies)
    ]
    for proc in procs:  # every copy has loaded and warmed up
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"a {mode} worker failed before it was ready (exit {proc.wait()})")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a {mode} worker failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per job")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--context", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the table to this JSON file")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.batch, args.context)
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"organism fine-tune, batch {args.batch}x{args.context} tokens, {args.steps} timed steps; {cores} cores; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    header = f"{'mode':<11} {'threads':>7} {'wait policy':>11} {'alone s':>8} {'side-by-side s':>15} {'ratio':>6}"
    print(header)
    rows = []
    for mode in args.modes:
        (alone,) = run_copies(mode, 1, args)
        pair = run_copies(mode, 2, args)
        slower = max(r["seconds"] for r in pair)
        threads = "/".join(str(r["threads"]) for r in [alone, *pair])
        side = " / ".join(f"{r['seconds']:.2f}" for r in pair)
        print(
            f"{mode:<11} {threads:>7} {alone['wait_policy']:>11} {alone['seconds']:>8.2f} {side:>15} "
            f"{slower / alone['seconds']:>6.2f}",
            flush=True,
        )
        rows.append(
            {
                "mode": mode,
                "threads": threads,
                "wait_policy": alone["wait_policy"],
                "alone_s": alone["seconds"],
                "side_by_side_s": side,
                "ratio": slower / alone["seconds"],
            }
        )
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    if args.json:
        import qwen3_scope_cli  # lazy: the driver stays free of torch (its workers import it)

        qwen3_scope_cli.starting = True  # `qwen3_scope` then defers torch and SAELens
        from qwen3_scope.core.io import atomic_write_json  # lazy: after the flag above

        header = (
            f"organism fine-tune, batch {args.batch}x{args.context} tokens, {args.steps} timed steps; {cores} cores"
        )
        atomic_write_json(
            args.json, {"benchmark": "bench_side_by_side", "header": header, "tables": {"modes": rows}}, sort_keys=False
        )


if __name__ == "__main__":
    main()

"""Sampling throughput: jaxpotts (dense and factored) against adabmDCA on identical parameters.

    python benchmarks/sampling.py                 # the table of benchmarks/README.md
    python benchmarks/sampling.py --quick         # small smoke run
    pip install torch==2.13.0 adabmDCA            # to include the peer (torch on CPU)
    python benchmarks/sampling.py --peer-python .peer/bin/python   # peer from another venv

The peer runs in a subprocess of the interpreter given by `--peer-python` (default: the
environment variable JAXPOTTS_PEER_PYTHON, else this interpreter), so adabmDCA and torch can
live in a venv of their own: `python3 -m venv .peer && .peer/bin/pip install torch==2.13.0
adabmDCA`.

Prints a table and writes JSON (default benchmarks/results/sampling.json). Times are of whole
`jaxpotts.sample` calls (initial states, sweeps, one recorded sample with its energy) and of
whole adabmDCA sampler calls, exclude compilation (warm-up runs of the same shapes first) and
are the best of `--repeats` runs, because these shared machines are noisy. The sweep counts give
about 1-2 s per timed run, so fixed costs are a few percent. The peer runs in a subprocess of
its own, at each of `--threads` torch thread counts; the best is kept (on a loaded 2-core
machine OpenMP's spinning threads can make 2 threads several times slower than 1).

On CPU, `--devices` (default: one per core) sets `jax_num_cpu_devices`, and `sample` splits
the chains over the devices: XLA:CPU runs one device's sampler loop on about one core. Runs
unchanged on any JAX backend and records it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxpotts.potts import random_factored_potts, to_dense
from jaxpotts.sampling import sample

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from adabmdca_probe import peer_versions  # noqa: E402  (benchmarks/peers/)


def time_jaxpotts(model, method, n_chains, n_sweeps, repeats):
    def run(key):
        res = sample(model, key, n_chains=n_chains, n_samples=1, n_burnin=n_sweeps - 1, method=method, progress=False)
        return res.sequences.block_until_ready()

    run(jax.random.PRNGKey(0))  # compile
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        run(jax.random.PRNGKey(r + 1))
        best = min(best, time.perf_counter() - t0)
    return best


_PEER_SCRIPT = r"""
import sys, time, numpy as np, torch
from adabmDCA.sampling import get_sampler
path, method, n_sweeps, repeats, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
data = np.load(path)
params = {"bias": torch.tensor(data["fields"]), "coupling_matrix": torch.tensor(data["couplings"])}
L, q = data["fields"].shape
sampler = torch.jit.script(get_sampler(method))
gen = torch.Generator().manual_seed(0)
chains = torch.nn.functional.one_hot(torch.randint(0, q, (int(data["n_chains"]), L), generator=gen), q).float()
for _ in range(2):  # TorchScript's profiling executor optimises after the first calls
    sampler(chains, params, 1, 1.0)
best = float("inf")
for _ in range(repeats):
    t0 = time.perf_counter()
    sampler(chains, params, n_sweeps, 1.0)
    best = min(best, time.perf_counter() - t0)
print(best)
"""


def time_adabmdca(model, method, n_chains, n_sweeps, repeats, threads, python):
    """Best time of adabmDCA's TorchScript sampler with `threads` torch threads, in its own
    process: XLA's CPU thread pool in this process would otherwise compete with torch's
    threads and slow the peer down."""
    import subprocess
    import tempfile

    dense = to_dense(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.npz"
        np.savez(
            path,
            fields=np.asarray(dense.fields, np.float32),
            n_chains=n_chains,
            # adabmDCA stores J[i, a, j, b]
            couplings=np.ascontiguousarray(np.asarray(dense.couplings, np.float32).transpose(0, 2, 1, 3)),
        )
        out = subprocess.run(
            [python, "-c", _PEER_SCRIPT, str(path), method, str(n_sweeps), str(repeats), str(threads)],
            check=True,
            capture_output=True,
            text=True,
        )
    return float(out.stdout.strip().splitlines()[-1])


def peer_available(python: str) -> str | None:
    """torch's version if `python` can import adabmDCA and torch, else None."""
    return (peer_versions(python) or {}).get("torch")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--sizes", default=None, help="comma-separated L values (default 64,200; quick: 16)")
    parser.add_argument("--q", type=int, default=21)
    parser.add_argument("--chains", type=int, default=None, help="default 1000 (quick: 100)")
    parser.add_argument(
        "--sweeps",
        type=int,
        default=None,
        help="sweeps per timed jaxpotts run (default 80 (64/L)^2, at least 24; the peer runs 1/4)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        default=f"1,{os.cpu_count()}",
        help="comma-separated torch thread counts for the peer; the best is kept",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=os.cpu_count(),
        help="CPU backend only: JAX devices (jax_num_cpu_devices) to split the chains over",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip adabmDCA even if installed")
    parser.add_argument(
        "--peer-python",
        default=os.environ.get("JAXPOTTS_PEER_PYTHON", sys.executable),
        help="interpreter with adabmDCA and torch (default: $JAXPOTTS_PEER_PYTHON, else this one)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sampling.json")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    # Before JAX starts its backends; no effect on GPU/TPU backends.
    jax.config.update("jax_num_cpu_devices", args.devices)

    sizes = [int(x) for x in (args.sizes or ("16" if args.quick else "64,200")).split(",")]
    n_chains = args.chains or (100 if args.quick else 1000)
    q = args.q
    peer = None if args.no_peer else peer_available(args.peer_python)
    thread_counts = [int(t) for t in args.threads.split(",")]
    rows = []
    for L in sizes:
        # About 1-2 s of dense jaxpotts work at each size (more for slower backends is fine).
        # At least 24: a dense `sample` call makes a transposed copy of the couplings (about one
        # sweep's time) and the energies of the recorded sample before it returns.
        n_sweeps = args.sweeps or (3 if args.quick else max(24, int(round(80 * (64 / L) ** 2))))
        factored = random_factored_potts(jax.random.PRNGKey(L), L, q, coupling_scale=0.5, field_scale=0.3)
        dense = to_dense(factored)
        for method in ("gibbs", "metropolis"):
            entries = [("jaxpotts", "dense", dense), ("jaxpotts", "factored", factored)]
            for impl, kind, model in entries:
                seconds = time_jaxpotts(model, method, n_chains, n_sweeps, args.repeats)
                rows.append(
                    dict(
                        impl=impl,
                        kind=kind,
                        method=method,
                        L=L,
                        q=q,
                        n_chains=n_chains,
                        n_sweeps=n_sweeps,
                        seconds=seconds,
                    )
                )
            if peer:
                peer_sweeps = max(2, n_sweeps // 4)
                by_threads = {
                    t: time_adabmdca(dense, method, n_chains, peer_sweeps, args.repeats, t, args.peer_python)
                    for t in thread_counts
                }
                threads = min(by_threads, key=by_threads.get)
                rows.append(
                    dict(
                        impl="adabmDCA",
                        kind="dense",
                        method=method,
                        L=L,
                        q=q,
                        n_chains=n_chains,
                        n_sweeps=peer_sweeps,
                        seconds=by_threads[threads],
                        threads=threads,
                        seconds_by_threads={str(t): v for t, v in by_threads.items()},
                    )
                )
    for r in rows:
        r["sweeps_per_s"] = r["n_sweeps"] / r["seconds"]
        r["site_updates_per_s"] = r["sweeps_per_s"] * r["n_chains"] * r["L"]

    def rate(impl, kind, method, L):
        for r in rows:
            if (r["impl"], r["kind"], r["method"], r["L"]) == (impl, kind, method, L):
                return r["sweeps_per_s"]
        return None

    ratios = []
    for L in sizes:
        for method in ("gibbs", "metropolis"):
            dense_rate = rate("jaxpotts", "dense", method, L)
            fact_rate = rate("jaxpotts", "factored", method, L)
            peer_rate = rate("adabmDCA", "dense", method, L)
            ratios.append(
                dict(
                    L=L,
                    method=method,
                    dense_vs_adabmDCA=dense_rate / peer_rate if peer_rate else None,
                    factored_vs_dense=fact_rate / dense_rate,
                    factored_vs_adabmDCA=fact_rate / peer_rate if peer_rate else None,
                )
            )

    device = jax.devices()[0]
    meta = dict(
        backend=jax.default_backend(),
        device=str(device),
        device_kind=getattr(device, "device_kind", ""),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        processor=platform.processor(),
        jax=jax.__version__,
        jax_devices=jax.local_device_count(),
        torch=peer,
        x64=bool(jax.config.jax_enable_x64),
        load_average_start=load_start,
        load_average=os.getloadavg(),
        date=time.strftime("%Y-%m-%d %H:%M:%S %z"),
    )
    print(
        f"device: {meta['backend']} ({meta['device_kind']}) x {meta['jax_devices']}, {meta['cpu_count']} CPUs, "
        f"jax {meta['jax']}"
        + (f", torch {peer}" if peer else ", adabmDCA not installed")
        + f"; load average {' '.join(f'{x:.2f}' for x in load_start)} at the start,"
        + f" {' '.join(f'{x:.2f}' for x in meta['load_average'])} at the end"
    )
    print(f"{'impl':9} {'kind':9} {'method':11} {'L':>4} {'q':>3} {'chains':>6} {'sweeps/s':>9} {'site-updates/s':>15}")
    for r in rows:
        note = f"  ({r['threads']} torch thread{'s' if r['threads'] > 1 else ''})" if "threads" in r else ""
        print(
            f"{r['impl']:9} {r['kind']:9} {r['method']:11} {r['L']:>4} {r['q']:>3} {r['n_chains']:>6} "
            f"{r['sweeps_per_s']:>9.2f} {r['site_updates_per_s']:>15.3e}{note}"
        )
    print()
    print(f"{'L':>4} {'method':11} {'dense/adabmDCA':>15} {'factored/dense':>15} {'factored/adabmDCA':>18}")

    def fmt(x):
        return f"{x:.2f}x" if x is not None else "n/a"

    for r in ratios:
        print(
            f"{r['L']:>4} {r['method']:11} {fmt(r['dense_vs_adabmDCA']):>15} {fmt(r['factored_vs_dense']):>15} "
            f"{fmt(r['factored_vs_adabmDCA']):>18}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(meta=meta, rows=rows, ratios=ratios), indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

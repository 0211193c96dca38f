"""One-call accelerator benchmark (issue 20): sampling, contact fits, replica curve, test suite.

    python benchmarks/accelerator.py                  # everything, < 8 min on one GPU
    python benchmarks/accelerator.py --quick          # smoke run, ~1-2 min on a CPU
    python benchmarks/accelerator.py --sections sampling,tests --budget 400

Sections, in this order, each with its own time budget (a section that runs out records what
it finished and what it skipped; the whole run stays under `--budget` seconds):

1. **sampling**: site updates per second of `jaxpotts.sample` (sequential sweeps, one recorded
   sample; compilation excluded; best of 3 warm calls whose sweep count gives ~`--target` s
   each) for L = 64, 200, chains 1000, 10000, Gibbs and Metropolis, on a random q = 21
   `random_factored_potts(PRNGKey(L), L, 21, coupling_scale=0.5, field_scale=0.3)` and its
   `to_dense` model: dense XLA, dense Pallas, factored XLA, factored Pallas (`kernel=`), and
   adabmDCA's fused Triton samplers (`adabmDCA.sampling_triton`, random site per step for all
   chains, same dense parameters) when adabmDCA, torch and a CUDA device are there. The peer
   runs in a subprocess (its own CUDA context; this process caps JAX's GPU preallocation).
   Then a small scan of the Pallas launch settings (chain_block, num_warps) on one row.
2. **contacts**: `jaxpotts.contacts.pipeline` with its defaults on PF00014, PF00763 (plmDCA and
   factored attention) and 3n2a (L = 406, plmDCA), each in a subprocess with a time limit:
   cold call (compiles), then warm call (compiled), fit time, iterations, PPV against the
   structure. Data: `--data` (default: the first of ../shared/data, ./shared/data that exists).
3. **replica**: the q = 2 learning curve (20 alphas x 3 lambdas, tol 1e-10, float64), as in
   benchmarks/replica.py: compile time and best warm curve.
4. **tests**: the default test suite (`python -m pytest -q tests`) on this machine's default
   backend, in a subprocess, with the time left; its summary line and failures are recorded.

Writes one JSON (default benchmarks/results/accelerator.json: device, versions, every number)
and prints Markdown tables. Runs unchanged on CPU (the Pallas kernel then runs in interpret
mode, which is slow: use --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing
# The adabmDCA peer gets its own CUDA context in a subprocess: leave it room on the GPU.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")

import jax  # noqa: E402
import numpy as np  # noqa: E402

SECTIONS = ("sampling", "contacts", "replica", "tests")
# Site updates/s on one H200 from the issue (best of 3 warm calls, q = 21): adabmDCA Triton.
ISSUE_PEER = {
    (64, 1000, "gibbs"): 4.5e8,
    (64, 1000, "metropolis"): 5.3e8,
    (64, 10000, "gibbs"): 5.9e8,
    (64, 10000, "metropolis"): 2.8e9,
    (200, 1000, "gibbs"): 1.4e8,
    (200, 10000, "gibbs"): 1.8e8,
    (200, 10000, "metropolis"): 5.7e8,
}
# Fit seconds of the contacts pipeline on the project's 2-core CPU (benchmarks/README.md, Contacts).
CPU_FIT_S = {
    ("PF00014", "plm"): 2.5,
    ("PF00014", "attention"): 10.6,
    ("PF00763", "plm"): 31.0,
    ("PF00763", "attention"): 209.4,
}


class Clock:
    """Seconds left of the whole run and of the current section."""

    def __init__(self, budget: float):
        self.t0, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "jax",
        "jaxlib",
        "jax-cuda12-plugin",
        "jax-cuda13-plugin",
        "equinox",
        "optax",
        "numpy",
        "scipy",
        "adabmDCA",
        "torch",
        "triton",
        "pytest",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def device_info() -> dict:
    d = jax.devices()[0]
    return dict(
        backend=jax.default_backend(),
        device=str(d),
        device_kind=getattr(d, "device_kind", ""),
        n_devices=jax.device_count(),
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        python=platform.python_version(),
    )


# ----------------------------------------------------------------------------- sampling


def _models(L: int, q: int):
    from jaxpotts.potts import random_factored_potts, to_dense

    factored = random_factored_potts(jax.random.PRNGKey(L), L, q, coupling_scale=0.5, field_scale=0.3)
    return {"dense": to_dense(factored), "factored": factored}


def _time_sample(model, method: str, n_chains: int, kernel: str, target: float, max_sweeps: int) -> dict:
    """Compile, estimate the time per sweep, then best of 3 runs of ~target seconds."""
    from jaxpotts import sample

    def run(n_sweeps: int, seed: int) -> float:
        t0 = time.perf_counter()
        r = sample(
            model,
            jax.random.PRNGKey(seed),
            n_chains=n_chains,
            n_samples=1,
            n_burnin=n_sweeps - 1,
            method=method,
            kernel=kernel,
            progress=False,
        )
        r.sequences.block_until_ready()
        return time.perf_counter() - t0

    first = run(2, 0)
    probe = run(4, 1)
    n_sweeps = int(np.clip(target / max(probe / 4, 1e-6), 4, max_sweeps))
    times = [run(n_sweeps, 2 + r) for r in range(3)]
    best = min(times)
    return dict(
        first_call_s=first,
        sweeps=n_sweeps,
        best_s=best,
        times_s=times,
        updates_per_s=n_sweeps * n_chains * model.L / best,
    )


_PEER = r"""
import json, sys, time, numpy as np, torch
from adabmDCA.sampling_triton import gibbs_sampling_triton, metropolis_sampling_triton, is_triton_available
assert torch.cuda.is_available() and is_triton_available(), "adabmDCA's Triton samplers need CUDA and Triton"
jobs, target, max_sweeps = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
out = []
for job in jobs:
    data = np.load(job["params"])
    dev = torch.device("cuda")
    params = {"bias": torch.tensor(data["fields"], device=dev), "coupling_matrix": torch.tensor(data["couplings"], device=dev)}
    L, q = data["fields"].shape
    fn = gibbs_sampling_triton if job["method"] == "gibbs" else metropolis_sampling_triton
    gen = torch.Generator().manual_seed(0)
    chains = torch.nn.functional.one_hot(torch.randint(0, q, (job["n_chains"], L), generator=gen), q).float().to(dev)
    def run(n):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        fn(chains, params, n, 1.0); torch.cuda.synchronize()
        return time.perf_counter() - t0
    first = run(2); probe = run(4)
    n = int(np.clip(target / max(probe / 4, 1e-6), 4, max_sweeps))
    times = [run(n) for _ in range(3)]
    out.append(dict(job, first_call_s=first, sweeps=n, best_s=min(times), times_s=times,
                    updates_per_s=n * job["n_chains"] * L / min(times)))
    print(json.dumps(out[-1]), flush=True)
"""


def _peer_available() -> str | None:
    """Why adabmDCA's Triton samplers cannot run here, or None when they can."""
    try:
        import adabmDCA.sampling_triton as st  # noqa: F401
        import torch
    except Exception as err:  # ImportError, or a broken torch/triton install
        return f"not importable ({type(err).__name__}: {err})"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if not st.is_triton_available():
        return "Triton not available to adabmDCA"
    return None


def _run_peer(rows, q, target, max_sweeps, timeout) -> list[dict]:

    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for L in sorted({r[0] for r in rows}):
            dense = _models(L, q)["dense"]
            path = Path(tmp) / f"params_{L}.npz"
            # adabmDCA stores J[i, a, j, b]
            np.savez(
                path,
                fields=np.asarray(dense.fields, np.float32),
                couplings=np.ascontiguousarray(np.asarray(dense.couplings, np.float32).transpose(0, 2, 1, 3)),
            )
            jobs += [dict(params=str(path), L=L, n_chains=n, method=m) for (L_, n, m) in rows if L_ == L]
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _PEER, json.dumps(jobs), str(target), str(max_sweeps)],
                capture_output=True,
                text=True,
                timeout=max(timeout, 1),
            )
            stdout, err = proc.stdout, (proc.stderr[-2000:] if proc.returncode else "")
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = f"timed out after {timeout:.0f} s"
    results = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if err:
        results.append({"error": err})
    return results


def section_sampling(args, clock: Clock, budget: float) -> dict:
    t_end = time.perf_counter() + budget
    q = args.q
    if args.quick:
        Ls, chains, target, max_sweeps = (16,), (64,), 0.05, 50
    else:
        Ls, chains, target, max_sweeps = (64, 200), (1000, 10000), args.target, 5000
    rows = [(L, n, m) for L in Ls for n in chains for m in ("gibbs", "metropolis")]
    impls = [("dense", "xla"), ("dense", "pallas"), ("factored", "xla"), ("factored", "pallas")]
    # The peer first (the reference), with at most a third of the section.
    why_not = _peer_available()
    peer = []
    if why_not is None and not args.no_peer:
        peer = _run_peer(rows, q, target, max_sweeps, budget / 3)
        for p in peer:
            print("  adabmDCA Triton", p, flush=True)
    results, skipped = [], []
    for L in Ls:
        models = _models(L, q)
        for L_, n, method in rows:
            if L_ != L:
                continue
            for kind, kernel in impls:
                if time.perf_counter() > t_end:
                    skipped.append(dict(L=L, n_chains=n, method=method, couplings=kind, kernel=kernel))
                    continue
                try:
                    r = _time_sample(models[kind], method, n, kernel, target, max_sweeps)
                except Exception as err:  # a kernel that fails to compile is a result too
                    r = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
                results.append(
                    dict(impl="jaxpotts", couplings=kind, kernel=kernel, L=L, q=q, n_chains=n, method=method, **r)
                )
                print(
                    f"  L={L} chains={n} {method:10s} {kind:8s} {kernel:6s} "
                    + (f"{r['updates_per_s']:.2e} updates/s" if "updates_per_s" in r else r["error"]),
                    flush=True,
                )
    scan = _pallas_scan(args, t_end) if not args.quick and jax.default_backend() == "gpu" else []
    return dict(
        rows=results,
        peer=peer,
        peer_status=why_not or ("skipped (--no-peer)" if args.no_peer else "ran"),
        skipped=skipped,
        pallas_scan=scan,
        target_s=target,
    )


def _pallas_scan(args, t_end) -> list[dict]:
    """Sweeps/s of the bare Pallas sweep (no sample() around it) for a few launch settings, on
    the L = 200, 10000-chain rows: data to choose the defaults of `_pallas_sampling.config`."""
    from jaxpotts import _pallas_sampling as ps
    from jaxpotts.sampling import _sweep_uniforms

    out = []
    L, n = 200, 10000
    for kind, model in _models(L, args.q).items():
        for method in ("gibbs", "metropolis"):
            for chain_block, num_warps in ((1, 2), (1, 4), (1, 8), (4, 4)):
                if time.perf_counter() > t_end:
                    return out
                cfg = ps.config(n, chain_block, num_warps)
                ops = ps.operands(model)

                @jax.jit
                def sweeps(S, key, n_sweeps: int = 20):
                    def body(i, S):
                        _, u = _sweep_uniforms(model, jax.random.fold_in(key, i), n, method)
                        return ps.sweep_kernel_layout(ops, model.q, 1.0, method, u, S, cfg)[0]

                    return jax.lax.fori_loop(0, n_sweeps, body, S)

                S = ps.to_kernel_layout(jax.numpy.zeros((n, L), jax.numpy.int32), cfg)
                try:
                    sweeps(S, jax.random.PRNGKey(0)).block_until_ready()
                    times = []
                    for r in range(3):
                        t0 = time.perf_counter()
                        sweeps(S, jax.random.PRNGKey(r + 1)).block_until_ready()
                        times.append(time.perf_counter() - t0)
                    row = dict(updates_per_s=20 * n * L / min(times), best_s=min(times))
                except Exception as err:
                    row = dict(error=f"{type(err).__name__}: {str(err)[:300]}")
                out.append(
                    dict(
                        couplings=kind,
                        method=method,
                        L=L,
                        n_chains=n,
                        chain_block=chain_block,
                        num_warps=num_warps,
                        **row,
                    )
                )
                print("  pallas scan", out[-1], flush=True)
    return out


# ----------------------------------------------------------------------------- contacts

_CONTACT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from jaxpotts import contacts
aln, dist, method, opts = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
for run in ("cold", "warm"):
    t0 = time.perf_counter()
    res = contacts.pipeline(aln, method, progress=False, **opts)
    wall = time.perf_counter() - t0
    D = contacts.read_distances(dist, res.scores.shape[0])
    ppv = res.precision(D)
    h = res.history
    print(json.dumps(dict(run=run, wall_s=wall, seconds=res.seconds, L=int(res.scores.shape[0]),
                          M=int(res.alignment.seqs.shape[0]), m_eff=res.m_eff, iterations=int(h.step[-1]),
                          ppv={k: float(v) for k, v in ppv.items()})), flush=True)
"""


def _data_dir(arg) -> Path | None:
    for d in ([Path(arg)] if arg else []) + [REPO.parent / "shared" / "data", REPO / "shared" / "data"]:
        if (d / "pfam").is_dir():
            return d
    return None


def section_contacts(args, clock: Clock, budget: float) -> dict:
    data = _data_dir(args.data)
    if data is None:
        return dict(status="no data directory with pfam/ found (use --data)")
    fam = {
        "PF00014": (data / "pfam" / "PF00014.fasta", data / "pfam" / "PF00014_struct.dat"),
        "PF00763": (data / "pfam" / "PF00763.fasta", data / "pfam" / "PF00763_distances.dat"),
        "3n2a": (data / "panel" / "3n2a" / "3n2a_1_A.fasta.gz", data / "panel" / "3n2a" / "3n2a_distances.dat"),
    }
    if args.quick:
        items = [("PF00014", "plm", {"n_steps": 5}), ("PF00014", "attention", {"n_steps": 5})]
    else:
        items = [
            ("PF00014", "plm", {}),
            ("PF00763", "plm", {}),
            ("3n2a", "plm", {}),
            ("PF00014", "attention", {}),
            ("PF00763", "attention", {}),
        ]
    t_end = time.perf_counter() + budget
    out = []
    for family, method, opts in items:
        aln, dist = fam[family]
        left = t_end - time.perf_counter()
        row = dict(
            family=family, method=method, options=opts, cpu_fit_s=None if opts else CPU_FIT_S.get((family, method))
        )
        if not aln.exists():
            out.append(dict(row, status=f"missing {aln}"))
            continue
        if left < 10:
            out.append(dict(row, status="skipped: section budget spent"))
            continue
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("XLA_PYTHON_CLIENT_MEM_FRACTION", None)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CONTACT, str(REPO), str(aln), str(dist), method, json.dumps(opts)],
                capture_output=True,
                text=True,
                timeout=left,
                env=env,
            )
            stdout, status = proc.stdout, "ok" if proc.returncode == 0 else f"failed: {proc.stderr[-1500:]}"
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            status = f"timed out after {left:.0f} s"
        for line in stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                row[r.pop("run")] = r
        row["status"] = status
        out.append(row)
        warm = row.get("warm", {})
        print(
            f"  {family} {method}: {status}; cold {row.get('cold', {}).get('wall_s', float('nan')):.1f} s, "
            f"warm {warm.get('wall_s', float('nan')):.1f} s (fit {warm.get('seconds', {}).get('fit', float('nan')):.1f} s), "
            f"PPV {warm.get('ppv', row.get('cold', {}).get('ppv'))}",
            flush=True,
        )
    return dict(rows=out, data=str(data))


# ----------------------------------------------------------------------------- replica


def section_replica(args, clock: Clock, budget: float) -> dict:
    sys.path.insert(0, str(HERE))
    import replica as bench  # benchmarks/replica.py

    alphas, lams = (bench.ALPHAS, bench.LAMS) if not args.quick else (bench.ALPHAS[::4], bench.LAMS[1:])
    with jax.enable_x64(True):
        row, _ = bench.time_curve(2, "star", 1 if args.quick else 3, alphas, lams)
    print(f"  q=2 star: curve {row['curve_s']:.3f} s, compile {row['compile_s']:.1f} s", flush=True)
    return row


# ----------------------------------------------------------------------------- tests


def section_tests(args, clock: Clock, budget: float) -> dict:
    targets = args.tests.split() if args.tests else (["tests/test_precision.py"] if args.quick else ["tests"])
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XLA_PYTHON_CLIENT_MEM_FRACTION", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *targets]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(budget, 1), env=env)
        text, timed_out = proc.stdout + proc.stderr, False
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")) + (
            exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        )
        timed_out = True
    wall = time.perf_counter() - t0
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    failed = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
    # pytest -q progress lines: one character per test (. passed, F failed, E error, s skipped)
    progress = "".join(
        re.sub(r"\s*\[\s*\d+%\]$", "", line)
        for line in text.splitlines()
        if re.fullmatch(r"[.FEsxX]+\s*(\[\s*\d+%\])?", line.strip())
    )
    out = dict(
        command=" ".join(cmd),
        backend=jax.default_backend(),
        wall_s=wall,
        timed_out=timed_out,
        summary=summary[-1] if summary else None,
        failed=failed,
        progress_counts={c: progress.count(c) for c in ".FEsxX" if progress.count(c)},
        tail=text[-3000:],
    )
    print(f"  {out['summary'] or ('timed out' if timed_out else 'no summary')} in {wall:.0f} s", flush=True)
    for line in failed[:50]:
        print("   ", line)
    return out


# ----------------------------------------------------------------------------- report


def _fmt(x, spec=".2e"):
    return "" if x is None else format(x, spec)


def print_tables(result: dict) -> None:
    s = result.get("sampling")
    if s and s.get("rows"):
        print(
            "\n| L | chains | method | dense XLA | dense Pallas | factored XLA | factored Pallas | adabmDCA Triton | issue: adabmDCA (H200) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        keys = sorted({(r["L"], r["n_chains"], r["method"]) for r in s["rows"]})
        for L, n, m in keys:

            def get(kind, kernel):
                for r in s["rows"]:
                    if (r["L"], r["n_chains"], r["method"], r["couplings"], r["kernel"]) == (L, n, m, kind, kernel):
                        return _fmt(r.get("updates_per_s")) or "error"
                return ""

            peer = next(
                (p for p in s.get("peer", []) if (p.get("L"), p.get("n_chains"), p.get("method")) == (L, n, m)), {}
            )
            print(
                f"| {L} | {n} | {m} | {get('dense', 'xla')} | {get('dense', 'pallas')} | {get('factored', 'xla')} | "
                f"{get('factored', 'pallas')} | {_fmt(peer.get('updates_per_s'))} | {_fmt(ISSUE_PEER.get((L, n, m)))} |"
            )
        print(f"(site updates/s; adabmDCA Triton: {s.get('peer_status')})")
    c = result.get("contacts")
    if c and c.get("rows"):
        print(
            "\n| family | method | status | cold wall (s) | warm wall (s) | warm fit (s) | CPU fit (s, 2 cores) | iterations | PPV@L |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in c["rows"]:
            w, cold = r.get("warm", {}), r.get("cold", {})
            ppv = (w or cold).get("ppv", {})
            print(
                f"| {r['family']} | {r['method']} | {r['status'][:40]} | {_fmt(cold.get('wall_s'), '.1f')} | "
                f"{_fmt(w.get('wall_s'), '.1f')} | {_fmt(w.get('seconds', {}).get('fit'), '.2f')} | "
                f"{_fmt(r.get('cpu_fit_s'), '.1f')} | {(w or cold).get('iterations', '')} | "
                f"{_fmt(ppv.get('L') if ppv else None, '.3f')} |"
            )
    r = result.get("replica")
    if r and "curve_s" in r:
        print(
            f"\nreplica q=2 star: curve {r['curve_s']:.3f} s (compile {r['compile_s']:.1f} s), "
            f"{r['points']} points, converged={r['converged']}"
        )
    t = result.get("tests")
    if t:
        print(
            f"\ntests ({t['backend']}): {t['summary'] or ('timed out' if t['timed_out'] else 'no summary')}, "
            f"{t['wall_s']:.0f} s; {len(t['failed'])} failed"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run on a CPU")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 470; quick: 240)")
    ap.add_argument("--target", type=float, default=0.25, help="seconds per timed sampling call")
    ap.add_argument("--q", type=int, default=21)
    ap.add_argument("--no-peer", action="store_true", help="skip adabmDCA even if it is installed")
    ap.add_argument("--data", default=None, help="data directory holding pfam/ and panel/")
    ap.add_argument("--tests", default=None, help="pytest targets (default: tests; quick: tests/test_precision.py)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "accelerator.json")
    args = ap.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    clock = Clock(args.budget if args.budget is not None else (240.0 if args.quick else 470.0))
    # Shares of the budget; the tests get whatever is left at the end.
    share = {"sampling": 0.34, "contacts": 0.30, "replica": 0.05}
    result = dict(
        device=device_info(),
        versions=versions(),
        argv=sys.argv[1:],
        quick=args.quick,
        budget_s=clock.budget,
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    )
    print(f"device: {result['device']}\nversions: {result['versions']}", flush=True)
    fns = dict(sampling=section_sampling, contacts=section_contacts, replica=section_replica, tests=section_tests)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in SECTIONS:
        if name not in sections:
            continue
        budget = clock.left() - 5 if name == "tests" else min(share[name] * clock.budget, clock.left() - 30)
        print(f"== {name} (budget {budget:.0f} s)", flush=True)
        t0 = time.perf_counter()
        try:
            result[name] = fns[name](args, clock, budget)
        except Exception as err:
            result[name] = {"error": f"{type(err).__name__}: {err}"}
            print("  error:", result[name]["error"], flush=True)
        result.setdefault("section_s", {})[name] = time.perf_counter() - t0
        args.out.write_text(json.dumps(result, indent=1, default=str))  # partial results survive a kill
    result["total_s"] = clock.budget - clock.left()
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print_tables(result)
    print(f"\nwrote {args.out} ({result['total_s']:.0f} s)")


if __name__ == "__main__":
    main()

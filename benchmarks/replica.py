"""Replica saddle-point solver: time for one learning curve, and a scipy baseline for q = 2.

    python benchmarks/replica.py                 # the table of benchmarks/README.md (Replica)
    python benchmarks/replica.py --quick         # smoke run (fewer points, one repeat)

A learning curve is 20 alphas (geometric, 0.25 .. 16) x 3 lambdas (0.01, 0.1, 1) at
tol = 1e-10 in float64, for U = identity, rho = 9, q = 2 and q = 3, star and independent
inputs, with `jaxpotts.replica.learning_curve` (continuation along alpha, default
integrators). Reported: compilation time (first call minus a compiled call), the best of
`--repeats` compiled calls, and the total number of fixed-point iterations.

Baseline (q = 2, K = 1): what public replica codes do, in scipy -- each channel average by
adaptive `scipy.integrate.quad` over the cavity field (nested with an inner `quad` over the
teacher field for the independent scenario; the star teacher average in closed form, as in
jaxpotts), the scalar proximal point at every integrand evaluation by root finding on the
derivative (`scipy.optimize.brentq`, full precision), and a plain damped fixed-point iteration
(damping 0.5) to the same tol = 1e-10, warm-started along alpha. Quadrature tolerances
(epsabs 1e-11, epsrel 1e-10) make it at least as accurate as the jaxpotts rule; the run checks
that both agree on the order parameters. The baseline is far too slow for the whole curve, so
it solves the first `--baseline-points` points of the lambda = 0.1 branch; its curve time is
that per-point average times 60 (stated as extrapolated). The speed-up is also split into
fixed-point iterations (Anderson vs plain damping) and time per saddle-point map evaluation.

Prints a Markdown table and writes JSON (default benchmarks/results/replica.json), with the
JAX backend and devices.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from scipy import integrate, optimize

from jaxpotts import replica

ALPHAS = np.geomspace(0.25, 16.0, 20)
LAMS = (0.01, 0.1, 1.0)
RHO = 9.0
TOL = 1e-10


# ----------------------------------------------------------------------------- scipy baseline


class ScipyK1:
    """Straightforward scipy solver of the K = 1 (q = 2, U = I) saddle point."""

    def __init__(self, kind: str, rho: float, epsabs=1e-11, epsrel=1e-10):
        self.kind, self.rho = kind, rho
        self.delta = 1.0  # U = I: z_0 - z_1 = u with B = (1/2, -1/2)
        self.b = np.array([0.5, -0.5])
        self.sgn = np.array([1.0, -1.0])
        self.epsabs, self.epsrel = epsabs, epsrel
        self.log_c = math.log(sum(math.exp(rho * bb**2 / 2) for bb in self.b))
        self.n_maps = 0

    @staticmethod
    def _sig(t):
        return 0.5 * (1 + math.tanh(t / 2))

    def _prox(self, y, w, V):
        sg = self.sgn[y]
        fn = lambda u: -sg * self._sig(-sg * u) + (u - w) / V  # noqa: E731
        return optimize.brentq(fn, w - V - 1.0, w + V + 1.0, xtol=1e-14, rtol=4 * np.finfo(float).eps)

    def _teacher_avg(self, y, mean, var):
        """(E T, E dT/du*) over u* ~ N(mean, var)."""
        if self.kind == "star":
            T = math.exp(self.b[y] * mean + var * self.b[y] ** 2 / 2 - self.log_c)
            return T, self.b[y] * T
        s = math.sqrt(var)
        sg = self.sgn[y]

        def f(e, j):
            p = self._sig(sg * (mean + s * e))
            val = p if j == 0 else sg * p * (1 - p)
            return math.exp(-e * e / 2) / math.sqrt(2 * math.pi) * val

        return tuple(
            integrate.quad(f, -40, 40, args=(j,), epsabs=self.epsabs, epsrel=self.epsrel, limit=200)[0] for j in (0, 1)
        )

    def update(self, alpha, lam, x):
        m, Q, V = x
        self.n_maps += 1
        r = m / math.sqrt(Q) if Q > 0 else 0.0
        var = max(self.rho - r * r, 0.0)
        sq = math.sqrt(max(Q, 0.0))

        def integrand(xi):
            w = sq * xi
            out = np.zeros(3)
            for y in (0, 1):
                T, G = self._teacher_avg(y, r * xi, var)
                u = self._prox(y, w, V)
                f = (u - w) / V
                p = self._sig(u)
                dfdw = (1.0 / (1.0 + V * p * (1 - p)) - 1.0) / V
                out += np.array([G * f, T * f * f, -T * dfdw])
            return math.exp(-xi * xi / 2) / math.sqrt(2 * math.pi) * out

        vals = integrate.quad_vec(integrand, -40, 40, epsabs=self.epsabs, epsrel=self.epsrel)[0]
        m_hat, Q_hat, V_hat = alpha * vals
        d = lam + V_hat
        return np.array([self.rho * m_hat / d, (self.rho * m_hat**2 + Q_hat) / d**2, 1.0 / d])

    def solve(self, alpha, lam, x0, damping=0.5, tol=TOL, max_steps=5000):
        x = np.asarray(x0, float)
        for step in range(1, max_steps + 1):
            Fx = self.update(alpha, lam, x)
            r = np.max(np.abs(Fx - x) / (1 + np.abs(x)))
            if r <= tol:
                return x, step
            x = damping * x + (1 - damping) * Fx
        raise RuntimeError(f"scipy baseline did not converge at alpha={alpha}, lam={lam}")


# ----------------------------------------------------------------------------- timings


def time_curve(q, kind, repeats, alphas, lams):
    sc = replica.Scenario(q, np.eye(q), RHO, kind)
    t0 = time.perf_counter()
    table = replica.learning_curve(sc, alphas, lams, tol=TOL, progress=False)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        table = replica.learning_curve(sc, alphas, lams, tol=TOL, progress=False)
        times.append(time.perf_counter() - t0)
    best = min(times)
    n_steps = int(table["n_steps"].sum())
    return dict(
        q=q,
        kind=kind,
        K=sc.K,
        points=len(table["alpha"]),
        converged=bool(table["converged"].all()),
        max_residual=float(table["residual"].max()),
        compile_s=first - best,
        curve_s=best,
        all_s=times,
        fixed_point_steps=n_steps,
        ms_per_step=1e3 * best / (n_steps + len(table["alpha"])),
    ), table


def baseline(kind, table, n_points, alphas):
    """Solve the first n_points of the lam = 0.1 branch with the scipy baseline."""
    solver = ScipyK1(kind, RHO)
    lam = 0.1
    sel = np.nonzero(np.isclose(table["lam"], lam))[0][:n_points]
    x = np.array([0.0, 0.0, 1.0 / (lam + alphas[0] * 0.25 / 2)])
    t0 = time.perf_counter()
    steps, max_rel = 0, 0.0
    for i in sel:
        x, n = solver.solve(float(table["alpha"][i]), lam, x)
        steps += n
        ours = np.array([table["m"][i], table["Q"][i], table["V"][i]])
        max_rel = max(max_rel, float(np.max(np.abs(x - ours) / np.abs(ours))))
    elapsed = time.perf_counter() - t0
    return dict(
        kind=kind,
        points=len(sel),
        seconds=elapsed,
        per_point_s=elapsed / len(sel),
        steps=steps,
        map_evaluations=solver.n_maps,
        ms_per_map=1e3 * elapsed / solver.n_maps,
        curve_s_extrapolated=elapsed / len(sel) * len(table["alpha"]),
        max_rel_diff_vs_jaxpotts=max_rel,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 alphas x 2 lambdas, one repeat, one baseline point")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-points", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/replica.json")
    args = ap.parse_args(argv)
    alphas, lams = (ALPHAS, LAMS) if not args.quick else (ALPHAS[::4], LAMS[1:])
    repeats = 1 if args.quick else args.repeats
    n_base = 1 if args.quick else args.baseline_points

    rows, bases = [], []
    with jax.enable_x64(True):
        for q in (2, 3):
            for kind in ("star", "independent"):
                row, table = time_curve(q, kind, repeats, alphas, lams)
                rows.append(row)
                print(
                    f"q={q} {kind:11s} curve {row['curve_s']:.3f}s (compile {row['compile_s']:.1f}s, "
                    f"{row['fixed_point_steps']} steps, converged={row['converged']})",
                    flush=True,
                )
                if q == 2:
                    b = baseline(kind, table, n_base, alphas)
                    b["jaxpotts_curve_s"] = row["curve_s"]
                    b["jaxpotts_ms_per_step"] = row["ms_per_step"]
                    b["speedup"] = b["curve_s_extrapolated"] / row["curve_s"]
                    bases.append(b)
                    print(
                        f"   scipy baseline: {b['per_point_s']:.1f}s/point, {b['ms_per_map']:.0f} ms/map, "
                        f"curve ~{b['curve_s_extrapolated']:.0f}s -> speed-up {b['speedup']:.0f}x, "
                        f"max rel diff {b['max_rel_diff_vs_jaxpotts']:.1e}",
                        flush=True,
                    )

    print()
    print("| q | kind | K | points | curve (s) | compile (s) | fixed-point steps | ms/step | converged |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['q']} | {r['kind']} | {r['K']} | {r['points']} | {r['curve_s']:.3f} | {r['compile_s']:.1f} | "
            f"{r['fixed_point_steps']} | {r['ms_per_step']:.2f} | {r['converged']} |"
        )
    print()
    print(
        "| q=2 kind | scipy s/point | scipy curve (s, extrapolated) | jaxpotts curve (s) | speed-up | scipy ms/map | jaxpotts ms/step | scipy steps/point | max rel. diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for b in bases:
        print(
            f"| {b['kind']} | {b['per_point_s']:.2f} | {b['curve_s_extrapolated']:.0f} | {b['jaxpotts_curve_s']:.3f} | "
            f"{b['speedup']:.0f}x | {b['ms_per_map']:.1f} | {b['jaxpotts_ms_per_step']:.2f} | "
            f"{b['steps'] / b['points']:.0f} | {b['max_rel_diff_vs_jaxpotts']:.1e} |"
        )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(
        benchmark="replica learning curve",
        alphas=list(map(float, alphas)),
        lams=list(lams),
        rho=RHO,
        tol=TOL,
        backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()],
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        jax_version=jax.__version__,
        curves=rows,
        scipy_baseline=bases,
    )
    out.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

"""Replica theory of one learned conditional against finite-N simulations.

For each scenario (q = 2 and q = 3, U = identity and a non-trivial U, star and independent
inputs) the saddle point is solved on a fine alpha grid, and the same estimator is fitted to
exactly sampled data at N = 250, 500, 1000 input sites (several teachers/seeds each). The
script writes

- ``replica_vs_simulation.png/.pdf``: excess test loss (test loss minus the teacher's
  conditional entropy) against alpha, theory curves and simulation points with error bars;
- ``replica_deviation_vs_N.png/.pdf`` and ``deviation_table.md/.csv``: how far simulation is
  from theory as N grows (mean absolute deviation and mean |z| = |sim - theory| / stderr);
- ``replica_optimal_vs_bayes.png/.pdf``: ERM at the optimal ridge (found by differentiating
  through the fixed point) against the Bayes-optimal error;
- ``simulation_points.csv``, ``theory_curves.csv``, ``optimal_vs_bayes.csv``.

Usage::

    python examples/replica_vs_simulation.py --quick          # ~2-4 minutes on 2 CPU cores
    python examples/replica_vs_simulation.py --smoke          # seconds: only exercises the pipeline
    python examples/replica_vs_simulation.py                  # the full study (~30-60 minutes)

Theory runs in float64; simulations run in float32 unless --float64 (the fits' precision is
far below the statistical errors either way).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import jax
import numpy as np

from jaxpotts import plotting, replica

U_NONTRIVIAL = np.array([[2.0, 0.3, -0.3], [0.3, 0.0, 1.7], [-0.3, 1.7, 0.6]])  # symmetric, row sums 2
RHO = 9.0
OBS = ("m", "Q", "test_loss", "entropy", "excess_loss", "coupling_error", "train_loss")


def scenarios(quick: bool, smoke: bool = False):
    """(label, kind, Scenario) triples: q = 3, U = I only when `quick` (star only when `smoke`),
    else also q = 2 and a non-trivial U."""
    specs = (
        [("q=3, U=I", 3, np.eye(3))]
        if quick or smoke
        else [
            ("q=2, U=I", 2, np.eye(2)),
            ("q=3, U=I", 3, np.eye(3)),
            ("q=3, U=U'", 3, U_NONTRIVIAL),
        ]
    )
    kinds = ("star",) if smoke else ("star", "independent")
    return [(label, kind, replica.Scenario(q, U, RHO, kind)) for label, q, U in specs for kind in kinds]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small grid, small N, 2 seeds (a few minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny settings that only exercise the pipeline (tests)")
    ap.add_argument("--out", default="jaxpotts_out/replica_vs_simulation", help="output directory")
    ap.add_argument("--Ns", type=int, nargs="+", default=None, help="system sizes (default 250 500 1000)")
    ap.add_argument("--alphas", type=float, nargs="+", default=None, help="simulated alphas")
    ap.add_argument("--lams", type=float, nargs="+", default=None, help="ridge strengths")
    ap.add_argument("--seeds", type=int, default=None, help="teachers/data sets per point (default 4)")
    ap.add_argument("--n-test", type=int, default=20_000, help="fresh samples per test-loss estimate")
    ap.add_argument("--float64", action="store_true", help="simulate in float64 (slower)")
    ap.add_argument("--skip-bayes", action="store_true", help="skip the optimal-lambda / Bayes figure")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    args.n_fine = 33
    if args.smoke:
        args.quick = True
        args.Ns = args.Ns or [50]
        args.alphas = args.alphas or [2.0]
        args.lams = args.lams or [1.0]
        args.seeds = args.seeds or 2
        args.n_test = min(args.n_test, 2_000)
        args.n_fine = 5
        args.skip_bayes = True
    elif args.quick:
        args.Ns = args.Ns or [100, 200]
        args.alphas = args.alphas or [0.5, 2.0, 8.0]
        args.lams = args.lams or [1.0]
        args.seeds = args.seeds or 2
        args.n_test = min(args.n_test, 10_000)
    else:
        args.Ns = args.Ns or [250, 500, 1000]
        args.alphas = args.alphas or [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
        args.lams = args.lams or [0.1, 1.0]
        args.seeds = args.seeds or 4
    return args


def log(msg, quiet):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def theory_tables(specs, lams, sim_alphas, quiet, n_fine=33):
    """Curves on a fine grid that contains the simulated alphas, so the theory at each
    simulation point is a row of the same solve (float64)."""
    grid = np.unique(np.concatenate([np.geomspace(0.2, 20.0, n_fine), np.asarray(sim_alphas, float)]))
    curves, at_points = [], {}
    with jax.enable_x64(True):
        for label, kind, sc in specs:
            t0 = time.time()
            table = replica.learning_curve(sc, grid, lams, progress=False)
            if not table["converged"].all():
                raise RuntimeError(f"theory curve did not converge for {label} {kind}")
            curves.append((label, kind, table))
            for i in range(len(table["alpha"])):
                at_points[(label, kind, float(table["lam"][i]), float(table["alpha"][i]))] = {
                    k: float(table[k][i]) for k in OBS
                }
            log(f"theory {label:10s} {kind:11s} {time.time() - t0:6.1f}s", quiet)
    return curves, at_points


def run_simulations(specs, args, at_points, out_dir):
    """All simulation points; results cached in simulation_points.jsonl (resumable)."""
    cache_path = os.path.join(out_dir, "simulation_points.jsonl")
    done = {}
    if os.path.exists(cache_path):
        with open(cache_path) as fh:
            for line in fh:
                row = json.loads(line)
                done[(row["scenario"], row["kind"], row["N"], row["lam"], row["alpha"], row["seeds"])] = row
    rows = []
    key = jax.random.key(2024)
    n_total = len(specs) * len(args.Ns) * len(args.lams) * len(args.alphas)
    i = 0
    with jax.enable_x64(bool(args.float64)), open(cache_path, "a") as cache:
        for s_idx, (label, kind, sc) in enumerate(specs):
            for N in args.Ns:
                for lam in args.lams:
                    for alpha in args.alphas:
                        i += 1
                        ck = (label, kind, N, float(lam), float(alpha), args.seeds)
                        if ck in done:
                            rows.append(done[ck])
                            continue
                        t0 = time.time()
                        sub = jax.random.fold_in(
                            jax.random.fold_in(key, s_idx), N * 1000 + int(alpha * 100) + int(lam * 10)
                        )
                        res = replica.simulate(sc, alpha, lam, N=N, key=sub, n_seeds=args.seeds, n_test=args.n_test)
                        th = at_points[(label, kind, float(lam), float(alpha))]
                        row = dict(
                            scenario=label,
                            kind=kind,
                            q=sc.q,
                            N=N,
                            lam=float(lam),
                            alpha=float(alpha),
                            seeds=args.seeds,
                            M=res.M,
                            max_grad_norm=res.max_grad_norm,
                        )
                        for k in OBS:
                            row[k] = res.mean[k]
                            row[k + "_se"] = res.stderr[k]
                            row[k + "_theory"] = th[k]
                        rows.append(row)
                        cache.write(json.dumps(row) + "\n")
                        cache.flush()
                        log(
                            f"[{i}/{n_total}] {label} {kind} N={N} lam={lam} alpha={alpha}: excess "
                            f"{row['excess_loss']:.4f}+-{row['excess_loss_se']:.4f} (theory {th['excess_loss']:.4f}) "
                            f"{time.time() - t0:.1f}s",
                            args.quiet,
                        )
    return rows


def deviation_table(rows, Ns):
    """Per N: mean |sim - theory| and mean |z| over all points, for a few observables."""
    out = []
    for N in Ns:
        sel = [r for r in rows if r["N"] == N]
        entry = {"N": N, "points": len(sel)}
        for k in ("excess_loss", "test_loss", "m", "Q", "train_loss"):
            dev = np.array([r[k] - r[k + "_theory"] for r in sel])
            se = np.array([r[k + "_se"] for r in sel])
            scale = np.array([abs(r[k + "_theory"]) for r in sel]) if k in ("m", "Q") else np.ones(len(sel))
            entry[f"{k}_mean_abs_dev"] = float(np.mean(np.abs(dev) / scale))
            entry[f"{k}_mean_dev"] = float(np.mean(dev / scale))
            entry[f"{k}_mean_abs_z"] = float(np.mean(np.abs(dev) / np.maximum(se, 1e-300)))
        out.append(entry)
    return out


def write_rows_csv(rows, path):
    if not rows:
        return
    names = list(rows[0])
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        w.writerows(rows)


def write_deviation_md(table, path):
    cols = [
        ("excess_loss", "excess loss"),
        ("test_loss", "test loss"),
        ("train_loss", "train loss"),
        ("m", "m (rel.)"),
        ("Q", "Q (rel.)"),
    ]
    lines = [
        "| N | points | " + " | ".join(f"{name}: mean abs dev / mean dev / mean abs z" for _, name in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for e in table:
        cells = [
            f"{e[k + '_mean_abs_dev']:.4f} / {e[k + '_mean_dev']:+.4f} / {e[k + '_mean_abs_z']:.2f}" for k, _ in cols
        ]
        lines.append(f"| {e['N']} | {e['points']} | " + " | ".join(cells) + " |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def plot_curves(curves, rows, out_dir):
    """Theory curves and simulation points, one panel per (scenario, kind): star left, independent right."""
    fig = plotting.plot_replica_curves(
        {f"{label}, {kind}": table for label, kind, table in curves},
        [dict(r, panel=f"{r['scenario']}, {r['kind']}") for r in rows],
        ncols=2,
        title=rf"Replica theory vs simulation ($\rho$={RHO:g}); excess loss = test loss $-$ teacher entropy",
    )
    plotting.save_figure(fig, os.path.join(out_dir, "replica_vs_simulation.png"))


def expected_abs_t(n_seeds: int) -> float:
    """E|z| for pure noise when the standard error comes from n_seeds samples: the mean
    absolute value of a Student t variable with n_seeds - 1 degrees of freedom."""
    nu = n_seeds - 1
    if nu < 2:
        return float("inf")
    return math.sqrt(nu) * math.gamma((nu - 1) / 2) / (math.sqrt(math.pi) * math.gamma(nu / 2))


def plot_deviation(dev, out_dir, n_seeds):
    fig = plotting.plot_replica_deviation(
        dev, noise_level=expected_abs_t(n_seeds), noise_label=f"pure noise, {n_seeds} seeds"
    )
    plotting.save_figure(fig, os.path.join(out_dir, "replica_deviation_vs_N.png"))


def optimal_vs_bayes(specs, args, out_dir):
    alphas = np.geomspace(0.25, 16, 3 if args.smoke else 7 if args.quick else 13)
    rows = []
    with jax.enable_x64(True):
        for label, kind, sc in specs:
            t0 = time.time()
            opt = replica.optimal_lambda_curve(sc, alphas, lam0=0.1, progress=False)
            bayes = replica.bayes_curve(sc, alphas)
            for i, a in enumerate(alphas):
                rows.append(
                    dict(
                        scenario=label,
                        kind=kind,
                        alpha=float(a),
                        lam_opt=float(opt["lam"][i]),
                        erm_test_loss=float(opt["test_loss"][i]),
                        erm_excess_loss=float(opt["excess_loss"][i]),
                        erm_coupling_error=float(opt["coupling_error"][i]),
                        erm_converged=bool(opt["converged"][i]),
                        bayes_test_loss=float(bayes["test_loss"][i]),
                        bayes_excess_loss=float(bayes["excess_loss"][i]),
                        bayes_coupling_error=float(bayes["coupling_error"][i]),
                    )
                )
            log(f"optimal lambda + Bayes {label:10s} {kind:11s} {time.time() - t0:6.1f}s", args.quiet)
    write_rows_csv(rows, os.path.join(out_dir, "optimal_vs_bayes.csv"))
    plotting.save_figure(plotting.plot_optimal_vs_bayes(rows), os.path.join(out_dir, "replica_optimal_vs_bayes.png"))
    return rows


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    specs = scenarios(args.quick, args.smoke)
    t_start = time.time()
    curves, at_points = theory_tables(specs, args.lams, args.alphas, args.quiet, args.n_fine)
    with open(os.path.join(args.out, "theory_curves.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["scenario", "kind", *replica.TABLE_COLUMNS])
        for label, kind, table in curves:
            for i in range(len(table["alpha"])):
                w.writerow([label, kind, *[np.asarray(table[c][i]).item() for c in replica.TABLE_COLUMNS]])
    rows = run_simulations(specs, args, at_points, args.out)
    write_rows_csv(rows, os.path.join(args.out, "simulation_points.csv"))
    dev = deviation_table(rows, args.Ns)
    with open(os.path.join(args.out, "deviation_table.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dev[0]))
        w.writeheader()
        w.writerows(dev)
    md = write_deviation_md(dev, os.path.join(args.out, "deviation_table.md"))
    md += (
        f"\n\nmean abs dev: mean over points of |sim - theory| (relative for m, Q); mean dev: signed "
        f"(bias); mean abs z: |sim - theory| / stderr over {args.seeds} seeds, {expected_abs_t(args.seeds):.2f} "
        "expected for pure noise (Student t)."
    )
    with open(os.path.join(args.out, "deviation_table.md"), "a") as fh:
        fh.write(md[md.index("\n\nmean abs dev") :] + "\n")
    plot_curves(curves, rows, args.out)
    plot_deviation(dev, args.out, args.seeds)
    if not args.skip_bayes:
        optimal_vs_bayes(specs, args, args.out)
    print(md)
    print(f"\nwrote figures and tables to {args.out} in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()

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

from jaxpotts import replica

U_NONTRIVIAL = np.array([[2.0, 0.3, -0.3], [0.3, 0.0, 1.7], [-0.3, 1.7, 0.6]])  # symmetric, row sums 2
RHO = 9.0
OBS = ("m", "Q", "test_loss", "entropy", "excess_loss", "coupling_error", "train_loss")


def scenarios(quick: bool):
    specs = [("q=3, U=I", 3, np.eye(3))] if quick else [
        ("q=2, U=I", 2, np.eye(2)),
        ("q=3, U=I", 3, np.eye(3)),
        ("q=3, U=U'", 3, U_NONTRIVIAL),
    ]
    out = []
    for label, q, U in specs:
        for kind in ("star", "independent"):
            out.append((label, kind, replica.Scenario(q, U, RHO, kind)))
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small grid, small N, 2 seeds (a few minutes)")
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
    if args.quick:
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


def theory_tables(specs, lams, sim_alphas, quiet):
    """Fine-grid curves and exact theory at the simulated alphas (float64)."""
    fine = np.geomspace(0.2, 20.0, 33)
    curves, at_points = [], {}
    with jax.enable_x64(True):
        for label, kind, sc in specs:
            t0 = time.time()
            table = replica.learning_curve(sc, fine, lams, progress=False)
            if not table["converged"].all():
                raise RuntimeError(f"theory curve did not converge for {label} {kind}")
            curves.append((label, kind, table))
            pts = replica.learning_curve(sc, sorted(sim_alphas), lams, progress=False)
            for i in range(len(pts["alpha"])):
                at_points[(label, kind, float(pts["lam"][i]), float(pts["alpha"][i]))] = {k: float(pts[k][i]) for k in OBS}
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
                        sub = jax.random.fold_in(jax.random.fold_in(key, s_idx), N * 1000 + int(alpha * 100) + int(lam * 10))
                        res = replica.simulate(sc, alpha, lam, N=N, key=sub, n_seeds=args.seeds, n_test=args.n_test)
                        th = at_points[(label, kind, float(lam), float(alpha))]
                        row = dict(scenario=label, kind=kind, q=sc.q, N=N, lam=float(lam), alpha=float(alpha), seeds=args.seeds,
                                   M=res.M, max_grad_norm=res.max_grad_norm)
                        for k in OBS:
                            row[k] = res.mean[k]
                            row[k + "_se"] = res.stderr[k]
                            row[k + "_theory"] = th[k]
                        rows.append(row)
                        cache.write(json.dumps(row) + "\n")
                        cache.flush()
                        log(f"[{i}/{n_total}] {label} {kind} N={N} lam={lam} alpha={alpha}: excess "
                            f"{row['excess_loss']:.4f}+-{row['excess_loss_se']:.4f} (theory {th['excess_loss']:.4f}) "
                            f"{time.time() - t0:.1f}s", args.quiet)
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
    cols = [("excess_loss", "excess loss"), ("test_loss", "test loss"), ("train_loss", "train loss"), ("m", "m (rel.)"), ("Q", "Q (rel.)")]
    lines = ["| N | points | " + " | ".join(f"{name}: mean abs dev / mean dev / mean abs z" for _, name in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for e in table:
        cells = [f"{e[k + '_mean_abs_dev']:.4f} / {e[k + '_mean_dev']:+.4f} / {e[k + '_mean_abs_z']:.2f}" for k, _ in cols]
        lines.append(f"| {e['N']} | {e['points']} | " + " | ".join(cells) + " |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def plot_curves(specs, curves, rows, args, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for label, _, _ in specs}, key=[s[0] for s in specs].index)
    fig, axes = plt.subplots(len(labels), 2, figsize=(10, 3.2 * len(labels)), squeeze=False, sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = ["o", "s", "^", "D"]
    for (label, kind, table) in curves:
        ax = axes[labels.index(label), 0 if kind == "star" else 1]
        for li, lam in enumerate(args.lams):
            sel = table["lam"] == lam
            ax.plot(table["alpha"][sel], table["excess_loss"][sel], color=colours[li], lw=1.5, label=f"theory, $\\lambda$={lam:g}")
            for ni, N in enumerate(args.Ns):
                pts = [r for r in rows if r["scenario"] == label and r["kind"] == kind and r["lam"] == lam and r["N"] == N]
                if not pts:
                    continue
                dx = 1 + 0.04 * (ni - (len(args.Ns) - 1) / 2)
                ax.errorbar([p["alpha"] * dx for p in pts], [p["excess_loss"] for p in pts],
                            yerr=[p["excess_loss_se"] for p in pts], fmt=markers[ni % 4], ms=3.5, color=colours[li],
                            alpha=0.35 + 0.65 * (ni + 1) / len(args.Ns), lw=1, capsize=2,
                            label=f"simulation N={N}" if li == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{label}, {kind}", fontsize=10)
        ax.set_ylabel("excess test loss")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[-1]:
        ax.set_xlabel(r"$\alpha = M/N$")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(rf"Replica theory vs simulation ($\rho$={RHO:g}); excess loss = test loss $-$ teacher entropy", fontsize=11)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out_dir, f"replica_vs_simulation.{ext}"), dpi=150)
    plt.close(fig)


def expected_abs_t(n_seeds: int) -> float:
    """E|z| for pure noise when the standard error comes from n_seeds samples: the mean
    absolute value of a Student t variable with n_seeds - 1 degrees of freedom."""
    nu = n_seeds - 1
    if nu < 2:
        return float("inf")
    return math.sqrt(nu) * math.gamma((nu - 1) / 2) / (math.sqrt(math.pi) * math.gamma(nu / 2))


def plot_deviation(dev, out_dir, n_seeds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ns = np.array([e["N"] for e in dev], float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for k, name in [("excess_loss", "excess loss (abs.)"), ("m", "m (rel.)"), ("Q", "Q (rel.)"), ("train_loss", "train loss (abs.)")]:
        axes[0].plot(Ns, [e[f"{k}_mean_abs_dev"] for e in dev], "o-", label=name)
        axes[1].plot(Ns, [e[f"{k}_mean_abs_z"] for e in dev], "o-", label=name)
    ref = [e["excess_loss_mean_abs_dev"] for e in dev][0]
    axes[0].plot(Ns, ref * (Ns[0] / Ns) ** 0.5, "k:", lw=1, label=r"$\propto N^{-1/2}$")
    axes[0].plot(Ns, ref * (Ns[0] / Ns), "k--", lw=1, label=r"$\propto N^{-1}$")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("N")
    axes[0].set_ylabel("mean |simulation - theory|")
    axes[1].set_xscale("log")
    noise = expected_abs_t(n_seeds)
    if np.isfinite(noise):
        axes[1].axhline(noise, color="k", lw=1, ls=":", label=f"pure noise, {n_seeds} seeds ({noise:.2f})")
    axes[1].set_xlabel("N")
    axes[1].set_ylabel("mean |z|,  z = (sim - theory) / stderr")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out_dir, f"replica_deviation_vs_N.{ext}"), dpi=150)
    plt.close(fig)


def optimal_vs_bayes(specs, args, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = np.geomspace(0.25, 16, 7 if args.quick else 13)
    rows = []
    with jax.enable_x64(True):
        for label, kind, sc in specs:
            t0 = time.time()
            opt = replica.optimal_lambda_curve(sc, alphas, lam0=0.1, progress=False)
            bayes = replica.bayes_curve(sc, alphas)
            for i, a in enumerate(alphas):
                rows.append(dict(scenario=label, kind=kind, alpha=float(a), lam_opt=float(opt["lam"][i]),
                                 erm_test_loss=float(opt["test_loss"][i]), erm_excess_loss=float(opt["excess_loss"][i]),
                                 erm_coupling_error=float(opt["coupling_error"][i]), erm_converged=bool(opt["converged"][i]),
                                 bayes_test_loss=float(bayes["test_loss"][i]), bayes_excess_loss=float(bayes["excess_loss"][i]),
                                 bayes_coupling_error=float(bayes["coupling_error"][i])))
            log(f"optimal lambda + Bayes {label:10s} {kind:11s} {time.time() - t0:6.1f}s", args.quiet)
    write_rows_csv(rows, os.path.join(out_dir, "optimal_vs_bayes.csv"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for si, (label, kind, _) in enumerate(specs):
        sel = [r for r in rows if r["scenario"] == label and r["kind"] == kind]
        a = [r["alpha"] for r in sel]
        c = colours[si % len(colours)]
        ls = "-" if kind == "star" else "--"
        axes[0].plot(a, [r["erm_excess_loss"] for r in sel], ls, color=c, label=f"ERM, {label}, {kind}")
        axes[0].plot(a, [r["bayes_excess_loss"] for r in sel], ls, color=c, marker="*", ms=5, lw=0.8, alpha=0.7)
        axes[1].plot(a, [r["erm_coupling_error"] for r in sel], ls, color=c)
        axes[1].plot(a, [r["bayes_coupling_error"] for r in sel], ls, color=c, marker="*", ms=5, lw=0.8, alpha=0.7)
        axes[2].plot(a, [r["lam_opt"] for r in sel], ls, color=c)
    axes[0].set_ylabel("excess test loss")
    axes[1].set_ylabel(r"coupling error $|\hat J - J^*|^2/|J^*|^2$")
    axes[2].set_ylabel(r"optimal $\lambda$ (test loss)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$\alpha$")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=6)
    axes[0].set_title("lines: ERM at optimal $\\lambda$; stars: Bayes-optimal", fontsize=9)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out_dir, f"replica_optimal_vs_bayes.{ext}"), dpi=150)
    plt.close(fig)
    return rows


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    specs = scenarios(args.quick)
    t_start = time.time()
    curves, at_points = theory_tables(specs, args.lams, args.alphas, args.quiet)
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
    md += (f"\n\nmean abs dev: mean over points of |sim - theory| (relative for m, Q); mean dev: signed "
           f"(bias); mean abs z: |sim - theory| / stderr over {args.seeds} seeds, {expected_abs_t(args.seeds):.2f} "
           "expected for pure noise (Student t).")
    with open(os.path.join(args.out, "deviation_table.md"), "a") as fh:
        fh.write(md[md.index("\n\nmean abs dev"):] + "\n")
    plot_curves(specs, curves, rows, args, args.out)
    plot_deviation(dev, args.out, args.seeds)
    if not args.skip_bayes:
        optimal_vs_bayes(specs, args, args.out)
    print(md)
    print(f"\nwrote figures and tables to {args.out} in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()

r"""The end-to-end story behind `jaxpotts demo`: model -> samples -> attention -> couplings -> theory.

1. **Model.** A generalized Potts model $p(s) \propto \exp(\sum_i h_i(s_i) + \sum_{i<j} J_{ij} U(s_i, s_j))$
   with a sparse symmetric J (Erdos-Renyi, mean degree 3) and a random symmetric colour matrix U.
2. **Samples.** Gibbs and Metropolis chains (`jaxpotts.sample`) with their diagnostics (energy
   autocorrelation time, ESS, split R-hat). Two kernels with the same target must agree: the
   energy means are compared in standard errors, and the one-site marginals. The Gibbs samples
   are the training set; the Metropolis samples (independent chains) the test set.
3. **Attention.** One head of factored attention with free attention weights and fields,
   $\ell_i(a) = f_i(a) + \sum_{j\ne i} A_{ij} V(a, s_j)$, the exact parametrisation of the model,
   trained by masked-language modelling (every site masked in turn) with Adam from a few random
   starts (the product $A V$ is not convex), keeping the lowest validation loss. Its test loss is
   compared with the floor, the conditional entropy of the true model estimated on the test set.
4. **MLM = PL.** $L \cdot \mathrm{MLM}(\theta) = \mathrm{PL}(\text{to\_potts}(\theta))$ is an
   algebraic identity (docs/mlm_equals_pl.md); it is checked numerically, with and without
   sequence weights, in float32 and float64.
5. **Couplings.** Learned $(A, V)$ against true $(J, U)$ up to scale, sign and gauge
   (`jaxpotts.evaluation.compare_factored`).
6. **Theory.** The replica learning curve of one conditional (docs/theory.md section 4, "The replica scenario"; q = 3,
   U = I, rho = 9, star graph) against finite-N simulations of the same estimator
   (`jaxpotts.replica.learning_curve`, `simulate`).

`run(out, quick=...)` writes ``report.md``, ``demo.json`` and the figures (PNG + PDF) to `out`
and returns the report as a dict.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._files import write_text
from ._report import markdown_table, write_json
from ._validation import enable_x64

__all__ = ["SETTINGS", "run"]

SETTINGS = {
    "quick": dict(
        L=20,
        q=4,
        n_chains=64,
        n_samples=100,
        n_burnin=200,
        thin=4,
        restarts=3,
        n_steps=600,
        batch_size=256,
        eval_every=100,
        learning_rate=0.02,
        replica_q=3,
        replica_rho=9.0,
        replica_kinds=("star",),
        replica_alphas=17,
        replica_lams=(1.0,),
        sim_alphas=(0.5, 2.0),
        sim_N=100,
        sim_seeds=2,
        sim_n_test=5000,
    ),
    "full": dict(
        L=20,
        q=4,
        n_chains=256,
        n_samples=200,
        n_burnin=1000,
        thin=5,
        restarts=3,
        n_steps=3000,
        batch_size=256,
        eval_every=200,
        learning_rate=0.02,
        replica_q=3,
        replica_rho=9.0,
        replica_kinds=("star", "independent"),
        replica_alphas=33,
        replica_lams=(0.1, 1.0),
        sim_alphas=(0.5, 1.0, 2.0, 4.0, 8.0),
        sim_N=200,
        sim_seeds=4,
        sim_n_test=20000,
    ),
}


# The true model's generator (`random_factored_potts`) options, also reported in demo.json.
_MODEL = dict(graph="erdos_renyi", mean_degree=3.0, colours="random", coupling_scale=0.6, field_scale=0.3)


def _sample_step(model, keys, cfg, progress):
    from .sampling import sample

    results, rows = {}, []
    for method, k in zip(("gibbs", "metropolis"), keys, strict=False):
        t0 = time.perf_counter()
        res = sample(
            model,
            k,
            n_chains=cfg["n_chains"],
            n_samples=cfg["n_samples"],
            n_burnin=cfg["n_burnin"],
            thin=cfg["thin"],
            method=method,
            progress=progress,
        )
        res.sequences.block_until_ready()
        summary = res.summary()
        e = np.asarray(res.energies, np.float64)
        summary["energy_stderr"] = float(e.std() / math.sqrt(max(summary["ess"], 1.0)))
        summary["seconds"] = time.perf_counter() - t0
        results[method] = res
        rows.append(summary)
    return results, rows


def _fit_step(true, train, test, key, cfg, progress):
    import jax

    from .attention import FactoredAttention
    from .training import fit

    k_init, k_fit = jax.random.split(key)
    fits = []
    for k in jax.random.split(k_init, cfg["restarts"]):
        fa = FactoredAttention(true.L, true.q, 1, 1, key=k, softmax=False, fields=True)
        fits.append(
            fit(
                fa,
                train,
                key=k_fit,
                learning_rate=cfg["learning_rate"],
                n_steps=cfg["n_steps"],
                batch_size=cfg["batch_size"],
                eval_every=cfg["eval_every"],
                validation_fraction=0.1,
                test_data=(test, None),
                progress=progress,
            )
        )
    best = int(np.argmin([h.best_val_loss for _, h in fits]))
    return fits[best][0], fits[best][1], [float(h.best_val_loss) for _, h in fits], best


def _identity_check(fa, seqs, key) -> list[dict]:
    """L * mlm_loss(fa) against pseudo_likelihood(fa.to_potts()), float32 and float64, +- weights."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from .losses import mlm_loss, pseudo_likelihood

    weights = np.asarray(jax.random.uniform(key, (seqs.shape[0],), minval=0.1, maxval=1.0), np.float64)
    rows = []
    for dtype in ("float32", "float64"):
        ctx = enable_x64() if dtype == "float64" else contextlib.nullcontext()
        with ctx:
            model = jax.tree_util.tree_map(
                lambda x, dtype=dtype: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) else x, fa
            )
            potts = model.to_potts()
            for label, w in (("uniform", None), ("random", jnp.asarray(weights, dtype))):
                lhs = float(fa.L * mlm_loss(model, seqs, w))
                rhs = float(pseudo_likelihood(potts, seqs, w))
                rows.append(
                    dict(
                        dtype=dtype,
                        weights=label,
                        L_times_mlm=lhs,
                        pseudo_likelihood=rhs,
                        abs_diff=abs(lhs - rhs),
                        rel_diff=abs(lhs - rhs) / abs(rhs),
                    )
                )
    return rows


def _replica_step(cfg, key, progress):
    import jax

    from . import replica

    q = cfg["replica_q"]
    sim_alphas = [float(a) for a in cfg["sim_alphas"]]
    # the simulated alphas are on the theory grid, so theory at those points needs no interpolation
    alphas = np.unique(np.concatenate([np.geomspace(0.2, 20.0, cfg["replica_alphas"]), sim_alphas]))
    curves, points = {}, []
    for ki, kind in enumerate(cfg["replica_kinds"]):
        sc = replica.Scenario(q, np.eye(q), cfg["replica_rho"], kind)
        panel = f"q={q}, U=I, rho={cfg['replica_rho']:g}, {kind}"
        with enable_x64():
            table = replica.learning_curve(sc, alphas, list(cfg["replica_lams"]), progress=progress)
        curves[panel] = table
        for lam in cfg["replica_lams"]:
            for ai, alpha in enumerate(sim_alphas):
                sub = jax.random.fold_in(jax.random.fold_in(key, ki), ai)
                res = replica.simulate(
                    sc, alpha, lam, N=cfg["sim_N"], key=sub, n_seeds=cfg["sim_seeds"], n_test=cfg["sim_n_test"]
                )
                i = int(np.flatnonzero((table["lam"] == lam) & np.isclose(table["alpha"], alpha))[0])
                row = dict(panel=panel, kind=kind, lam=float(lam), alpha=alpha, N=cfg["sim_N"], seeds=cfg["sim_seeds"])
                for name in ("excess_loss", "test_loss", "m", "Q", "coupling_error"):
                    row[name] = float(res.mean[name])
                    row[name + "_se"] = float(res.stderr[name])
                    row[name + "_theory"] = float(table[name][i])
                row["z_excess_loss"] = (row["excess_loss"] - row["excess_loss_theory"]) / max(
                    row["excess_loss_se"], 1e-300
                )
                points.append(row)
    return curves, points


SAMPLING_COLUMNS = [
    "method",
    "n_chains",
    "n_samples",
    "energy_mean",
    "energy_stderr",
    "acceptance_rate",
    "tau",
    "ess",
    "rhat",
    "seconds",
]


def _sampling_section(true, keys, cfg: dict, progress, out: Path, echo):
    """Step 2: Gibbs and Metropolis chains of the true model, their figures and agreement."""
    from . import plotting

    L, q = cfg["L"], cfg["q"]
    results, rows = _sample_step(true, keys, cfg, progress)
    for method, res in results.items():
        plotting.save_figure(
            plotting.plot_energy_diagnostics(res.energies, title=f"{method} sampling, L={L}, q={q}"),
            out / f"energy_{method}.png",
        )
    sg, sm = rows
    z_energy = abs(sg["energy_mean"] - sm["energy_mean"]) / math.hypot(sg["energy_stderr"], sm["energy_stderr"])
    marg = [np.eye(q)[np.asarray(r.sequences).reshape(-1, L)].mean(0) for r in results.values()]
    max_marginal_diff = float(np.max(np.abs(marg[0] - marg[1])))
    echo(
        f"2. sampling: {cfg['n_chains']} chains x {cfg['n_samples']} samples (thin {cfg['thin']}, burn-in "
        f"{cfg['n_burnin']} sweeps)\n"
        + markdown_table(rows, SAMPLING_COLUMNS)
        + f"\n   Gibbs vs Metropolis: energy means differ by {z_energy:.2f} standard errors; largest one-site "
        f"marginal difference {max_marginal_diff:.3f}"
    )

    return results, rows, z_energy, max_marginal_diff


def _training_section(true, train, test, k_fit, cfg: dict, progress, out: Path, echo):
    """Step 3: factored attention trained by MLM on the samples, against the entropy floor."""
    from . import plotting
    from .evaluation import entropy_floor
    from .losses import mlm_loss

    floor, floor_se = entropy_floor(true, test)
    fa, hist, restart_vals, best = _fit_step(true, train, test, k_fit, cfg, progress)
    test_loss = float(mlm_loss(fa, test))
    true_train = float(mlm_loss(true, train))
    plotting.save_figure(
        plotting.plot_loss_curves(
            {"factored attention": hist},
            floor=floor,
            floor_stderr=floor_se,
            title=f"factored attention, M = {len(train)} (best of {cfg['restarts']} starts)",
        ),
        out / "losses.png",
    )
    training = dict(
        M_train=int(len(train)),
        M_test=int(len(test)),
        restarts=cfg["restarts"],
        best_restart=best,
        restart_val_losses=restart_vals,
        best_step=int(hist.best_step),
        val_loss=float(hist.best_val_loss),
        test_loss=test_loss,
        floor=floor,
        floor_stderr=floor_se,
        excess_loss=test_loss - floor,
        true_model_train_loss=true_train,
        seconds=0.0,
    )
    echo(
        f"3. factored attention (1 head, free attention, fields), MLM with Adam, {cfg['n_steps']} steps, best of "
        f"{cfg['restarts']} starts (validation losses {', '.join(f'{v:.4f}' for v in restart_vals)}):\n"
        f"   test loss {test_loss:.4f}, floor (conditional entropy on {len(test)} test samples) {floor:.4f} +- "
        f"{floor_se:.4f}, excess {test_loss - floor:+.4f} nats per site"
    )

    return fa, hist, training


def _identity_section(fa, train, key, echo) -> list[dict]:
    """Step 4: MLM = PL on the first 2000 training sequences, with and without weights."""
    identity = _identity_check(fa, train[:2000], key)
    echo(
        "4. L * mlm_loss(fa, s, w) vs pseudo_likelihood(fa.to_potts(), s, w):\n"
        + markdown_table(
            identity, ["dtype", "weights", "L_times_mlm", "pseudo_likelihood", "abs_diff", "rel_diff"], floats="{:.10g}"
        )
    )
    return identity


def _couplings_section(fa, true, M_train: int, out: Path, echo):
    """Step 5: the learned couplings against the true ones, up to scale, sign and gauge."""
    from . import plotting
    from .evaluation import compare_factored

    cmp = compare_factored(fa, true)
    plotting.save_figure(
        plotting.plot_coupling_comparison(
            cmp, title=f"factored attention trained on M = {M_train}: couplings up to scale and gauge"
        ),
        out / "couplings.png",
    )
    echo(
        f"5. couplings up to scale and gauge: corr(J, A) {cmp.corr_J:.4f}, corr(U', V') {cmp.corr_U:.4f}, "
        f"relative error of the gauge-fixed J_ij(a,b) {cmp.rel_err_couplings:.3f}"
    )
    return cmp


_POINT_COLUMNS = ["kind", "lam", "alpha", "N", "excess_loss", "excess_loss_se", "excess_loss_theory", "z_excess_loss"]


def _replica_section(cfg: dict, key, progress, out: Path, echo):
    """Step 6: (curves, simulation points, seconds) of the replica theory against simulations."""
    from . import plotting

    t0 = time.perf_counter()
    curves, points = _replica_step(cfg, key, progress)
    plotting.save_figure(
        plotting.plot_replica_curves(curves, points, title="replica theory (lines) vs simulation (points)"),
        out / "replica.png",
    )
    seconds = time.perf_counter() - t0
    echo(
        f"6. replica learning curve (q={cfg['replica_q']}, U=I, rho={cfg['replica_rho']:g}; "
        f"{len(next(iter(curves.values()))['alpha'])} alphas) vs simulations at N={cfg['sim_N']}:\n"
        + markdown_table(points, _POINT_COLUMNS)
    )
    return curves, points, seconds


def run(
    out, *, quick: bool = False, seed: int = 0, progress: bool | None = None, echo: Callable[[str], None] = print
) -> dict:
    """Run the demo, write ``report.md``, ``demo.json`` and figures to `out`; return the report.

    Args:
        out: output folder (created).
        quick: the small settings (`SETTINGS["quick"]`, well under a minute of work on a laptop
            CPU); else `SETTINGS["full"]` (a few minutes).
        seed: PRNG seed; everything random derives from `jax.random.PRNGKey(seed)`.
        progress: progress bars (None: when stderr is a terminal; False: never).
        echo: where the human-readable summary goes (e.g. `print`, or `lambda s: None`).
    """
    import jax

    from .potts import random_factored_potts

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(SETTINGS["quick" if quick else "full"])
    t_start = time.perf_counter()
    timings = {}
    k_model, k_gibbs, k_metro, k_fit, k_weights, k_replica = jax.random.split(jax.random.PRNGKey(seed), 6)
    L, q = cfg["L"], cfg["q"]
    true = random_factored_potts(k_model, L, q, **_MODEL)
    echo(f"1. model: generalized Potts J_ij U(a,b), L={L}, q={q}, sparse J (mean degree 3), random symmetric U")

    t0 = time.perf_counter()
    results, rows, z_energy, max_marginal_diff = _sampling_section(true, (k_gibbs, k_metro), cfg, progress, out, echo)
    timings["sampling"] = time.perf_counter() - t0

    # record-major order: any prefix of the data set spans all chains
    train = np.asarray(results["gibbs"].sequences).transpose(1, 0, 2).reshape(-1, L)
    test = np.asarray(results["metropolis"].sequences).transpose(1, 0, 2).reshape(-1, L)

    t0 = time.perf_counter()
    fa, hist, training = _training_section(true, train, test, k_fit, cfg, progress, out, echo)
    timings["training"] = training["seconds"] = time.perf_counter() - t0

    identity = _identity_section(fa, train, k_weights, echo)
    cmp = _couplings_section(fa, true, len(train), out, echo)
    curves, points, timings["replica"] = _replica_section(cfg, k_replica, progress, out, echo)

    timings["total"] = time.perf_counter() - t_start
    report = {
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "quick": bool(quick),
        "seed": seed,
        "backend": jax.default_backend(),
        "model": {"L": L, "q": q, **_MODEL},
        "sampling": {r["method"]: r for r in rows},
        "gibbs_vs_metropolis": {"energy_z": float(z_energy), "max_marginal_diff": max_marginal_diff},
        "training": training,
        "history": hist.to_dict(),
        "mlm_equals_pl": identity,
        "couplings": cmp.metrics(),
        "replica": {
            "curves": {panel: {k: np.asarray(v).tolist() for k, v in table.items()} for panel, table in curves.items()},
            "simulations": points,
            "all_converged": bool(all(np.all(t["converged"]) for t in curves.values())),
        },
        "seconds": timings,
    }
    write_json(out / "demo.json", report)
    write_text(out / "report.md", _report_md(report, rows, SAMPLING_COLUMNS, identity, points, _POINT_COLUMNS, cfg))
    echo(
        f"wrote {out}/report.md, demo.json and figures energy_gibbs, energy_metropolis, losses, couplings, replica "
        f"(.png, .pdf) in {timings['total']:.0f} s"
    )
    return report


def _report_md(report, rows, SAMPLING_COLUMNS, identity, points, point_cols, cfg) -> str:
    t, c, g = report["training"], report["couplings"], report["gibbs_vs_metropolis"]
    m = report["model"]
    worst = max(r["rel_diff"] for r in identity if r["dtype"] == "float64")
    return f"""# jaxpotts demo ({"quick" if report["quick"] else "full"} run, seed {report["seed"]}, {report["backend"]})

## 1. A generalized Potts model

$p(s) \\propto \\exp(\\sum_i h_i(s_i) + \\sum_{{i<j}} J_{{ij}} U(s_i, s_j))$ with L = {m["L"]} sites,
q = {m["q"]} colours, a sparse symmetric J (Erdos-Renyi graph, mean degree {m["mean_degree"]:g}), a random
symmetric colour matrix U and small random fields.

## 2. Sampling it

{cfg["n_chains"]} chains, {cfg["n_burnin"]} burn-in sweeps, then {cfg["n_samples"]} samples every {cfg["thin"]} sweeps,
with two kernels. tau is the integrated autocorrelation time of the energy in recorded samples,
ESS the effective sample size, rhat the split R-hat across chains.

{markdown_table(rows, SAMPLING_COLUMNS)}

Both kernels target the same distribution: their energy means differ by {g["energy_z"]:.2f} standard
errors and their one-site marginals by at most {g["max_marginal_diff"]:.3f}.

![energy traces, Gibbs](energy_gibbs.png)
![energy traces, Metropolis](energy_metropolis.png)

## 3. Training factored attention by masked-language modelling

One head with free attention and fields, $\\ell_i(a) = f_i(a) + \\sum_{{j \\ne i}} A_{{ij}} V(a, s_j)$,
trained on the {t["M_train"]} Gibbs samples (10% held out for validation) with Adam; best of
{t["restarts"]} random starts by validation loss. Test set: the {t["M_test"]} Metropolis samples.

| | nats per site |
|---|---|
| test loss | {t["test_loss"]:.4f} |
| floor: conditional entropy of the true model (test samples) | {t["floor"]:.4f} +- {t["floor_stderr"]:.4f} |
| excess loss (paired, same test set) | {t["excess_loss"]:+.4f} |

![loss curves](losses.png)

## 4. The MLM loss is the pseudo-likelihood

$L \\cdot \\mathrm{{MLM}}(\\text{{fa}}, s, w) = \\mathrm{{PL}}(\\text{{fa.to\\_potts()}}, s, w)$ holds
for any parameters and data (docs/mlm_equals_pl.md). On the first {min(2000, t["M_train"])} training
sequences (largest relative difference in float64: {worst:.1e}):

{markdown_table(identity, ["dtype", "weights", "L_times_mlm", "pseudo_likelihood", "abs_diff", "rel_diff"], floats="{:.10g}")}

## 5. Learned against true couplings

After removing scale, sign and gauge: corr(J, A) = {c["corr_J"]:.4f}, corr(U', V') = {c["corr_U"]:.4f},
relative error of J = {c["rel_err_J"]:.3f}, relative error of the gauge-fixed couplings
$J_{{ij}}(a,b)$ = {c["rel_err_couplings"]:.3f}; the learned attention is {c["asymmetry"]:.2f} antisymmetric
(relative norm).

![couplings](couplings.png)

## 6. Replica theory of one learned conditional

The saddle point of docs/replica.md (q = {cfg["replica_q"]}, U = I, rho = {cfg["replica_rho"]:g}) on a grid
of alpha = M/N, against the same estimator fitted to exactly sampled data at N = {cfg["sim_N"]}
({cfg["sim_seeds"]} seeds per point; z = (simulation - theory) / standard error).

{markdown_table(points, point_cols)}

![replica curve](replica.png)

Time: {report["seconds"]["total"]:.0f} s in all (sampling {report["seconds"]["sampling"]:.0f} s,
training {report["seconds"]["training"]:.0f} s, replica {report["seconds"]["replica"]:.0f} s).
"""

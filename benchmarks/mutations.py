"""Mutation effects on a real deep mutational scan: Spearman of dE against measured fitness.

    python benchmarks/mutations.py                 # every configuration below (hours on 2 CPU cores)
    python benchmarks/mutations.py --quick         # independent + plmDCA with the default only
    python benchmarks/mutations.py --only plm-default attention
    python benchmarks/mutations.py --only bm --bm-budget 900   # bmDCA, stopped after 900 s

Data: ``shared/data/dms/DYR_ECOLI_Thompson_2019`` (plmc's DHFR.a2m, focus DYR_ECOLI/1-159, 12
focus-gap columns dropped: L = 159; 2363 single mutants of Thompson et al. 2019, ProteinGym's
``score``). Each configuration runs `jaxpotts.mutations.fit_model` in this process (read, weight
at 0.8 identity, fit, symmetrise) and scores every mutant; rho is Spearman's correlation between
``-dE`` and the measured score. References on the same alignment (shared/data/dms/.../README.md):
EVmutation (plmc + EVcouplings, lambda_J = 0.2 (L - 1) = 31.6, 200 iterations) 0.435, site-
independent 0.370.

Uncertainty: every row carries a bootstrap 95% interval of rho over the mutants (2000 resamples
of the 2363 mutants with replacement, seed 0, percentile interval; the model is not refitted, so
it measures the finite-mutant noise of rho, not the fit's). Configurations whose name says
``drop-unknown`` / ``evmutation-exact`` read the alignment with ``unknown="drop"`` (plmc's
validity filter: the 13 sequences holding an X go); the others read X as a gap.

Also measures the time to score 10^5 random multi-mutants (orders 1-5) with the fitted plmDCA
model (compiled once, then timed). Prints a table and writes JSON (default
benchmarks/results/mutations.json) with the device and versions.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DMS = HERE.parent.parent / "shared" / "data" / "dms" / "DYR_ECOLI_Thompson_2019"
REFERENCE = {"EVmutation (plmc + EVcouplings), same alignment": 0.435, "site-independent, same alignment": 0.370}


def configurations(L: int, q: int, m_eff: float) -> dict:
    """name -> (method, options, description). The rule's lambda_J is l2_rule."""
    from jaxpotts.contacts import PLM_DEFAULTS
    from jaxpotts.mutations import plm_settings

    rule = plm_settings(L, q, m_eff)["l2"]
    return {
        "independent": ("independent", {}, "site-independent, pseudocount 0.5"),
        "plm-default": (
            "plm",
            {},
            f"plmDCA, MUTATION_DEFAULTS (symmetric couplings, gap a state): l2 = 0.01 (q-1)(L-1)/N_eff = {rule:.4f}, "
            "l2_fields = 0.01/N_eff, L-BFGS to convergence (<= 1000 iterations)",
        ),
        "plm-gaps-missing": (
            "plm",
            {"gaps": "missing"},
            "as default, gaps as missing data: plmc -g's model, EVmutation's exact configuration",
        ),
        "plm-asymmetric": (
            "plm",
            {"couplings": "asymmetric"},
            "as default, asymmetric pseudo-likelihood (L conditionals with their own J_ij, J_ji, averaged after)",
        ),
        "plm-asymmetric-gaps-missing": (
            "plm",
            {"couplings": "asymmetric", "gaps": "missing"},
            "as default, asymmetric couplings and gaps as missing data",
        ),
        "plm-rule-x0.5": ("plm", {"l2": rule / 2}, f"as default, l2 = {rule / 2:.4f} (half the rule)"),
        "plm-rule-x2": ("plm", {"l2": rule * 2}, f"as default, l2 = {rule * 2:.4f} (twice the rule)"),
        "plm-fields-0.01": ("plm", {"l2_fields": 0.01}, "as default, l2_fields = 0.01 (plmDCA's field penalty)"),
        "plm-early-stop": ("plm", {"ftol": 1e-4}, "as default, stop when the objective falls < 1e-4 over 5 iterations"),
        "evmutation-exact": (
            "plm",
            {"unknown": "drop", "gaps": "missing", "n_steps": 200},
            "plmc's reference run: symmetric couplings, gaps as missing data (-g), 200 L-BFGS iterations "
            "(-m 200), the 13 sequences with unknown letters dropped; default l2 rule on the kept N_eff",
        ),
        "plm-default-drop-unknown": (
            "plm",
            {"unknown": "drop"},
            "as default (converged), the 13 sequences with unknown letters dropped (unknown='drop')",
        ),
        "bm": (
            "bm",
            {},
            "bmDCA, jaxpotts.defaults.BOLTZMANN (profile start, Adam lr 0.001, l2 0.001, 1000 chains x 10 "
            "sweeps), stopped at the target or after --bm-budget seconds",
        ),
        "plm-contacts": (
            "plm",
            dict(PLM_DEFAULTS),
            "plmDCA, contacts' PLM_DEFAULTS (l2 auto = max(0.01, 0.01 (q-1)(L-1)/N_eff), l2_fields 0.01, ftol 3e-3)",
        ),
        "attention": (
            "attention",
            {},
            "factored attention, contacts' ATTENTION_DEFAULTS (32 heads, l2 0.001, Adam, 200 epochs)",
        ),
    }


def read_dms():
    with open(DMS / "DYR_ECOLI_Thompson_plusLon_2019.csv") as fh:
        rows = list(csv.DictReader(fh))
    import numpy as np

    return [r["mutant"] for r in rows], np.array([float(r["score"]) for r in rows])


def bootstrap_spearman(x, y, n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    r"""Percentile bootstrap interval of Spearman's rho over the pairs (x_k, y_k).

    Resample the n_mut pairs with replacement `n` times (numpy Generator, `seed`), compute rho
    of each resample (ties at average rank, `jaxpotts.mutations.spearman`) and return the
    ((1 - level) / 2, (1 + level) / 2) quantiles.
    """
    import numpy as np

    from jaxpotts.mutations import spearman

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n, x.size))
    rhos = np.array([spearman(x[k], y[k]) for k in idx])
    lo, hi = np.quantile(rhos, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def fit_bm(aln, budget: float, seed: int = 0):
    """bmDCA with the default recipe on the focus alignment and its 0.8-identity weights, for at
    most `budget` seconds (plus the final equilibration check). Returns (model, row fields)."""
    import jax
    import numpy as np

    from jaxpotts.boltzmann import fit_boltzmann
    from jaxpotts.msa import sequence_weights

    weights = np.asarray(sequence_weights(aln, 0.8), np.float64)
    t0 = time.perf_counter()
    res = fit_boltzmann(
        aln.seqs, q=aln.alphabet.q, key=jax.random.PRNGKey(seed), weights=weights, max_seconds=budget, progress=False
    )
    seconds = time.perf_counter() - t0
    summary = res.summary()
    fields = {
        "fit_s": seconds,
        "iterations": int(res.history["step"][-1]) if res.history["step"] else 0,
        "l2": res.settings.get("l2"),
        "l2_fields": res.settings.get("l2_fields"),
        "bm_reached": res.reached,
        "bm_pearson": res.pearson,
        "bm_site_pearson": res.site_pearson,
        "bm_equilibration": res.equilibration,
        "bm_budget_s": budget,
        "bm_summary": summary,
    }
    return res.model, fields


def time_scoring(potts, aln, n: int = 100_000, seed: int = 0) -> dict:
    """Seconds to score n random variants of orders 1..5 (after one compiling call)."""
    import numpy as np

    from jaxpotts.mutations import delta_energy

    rng = np.random.default_rng(seed)
    L, q, K = aln.L, aln.alphabet.q, 5
    sites = np.argsort(rng.random((n, L)), axis=1)[:, :K].astype(np.int32)
    colours = rng.integers(1, q, size=(n, K)).astype(np.int32)
    mask = np.arange(K)[None, :] < rng.integers(1, K + 1, size=n)[:, None]
    delta_energy(potts, aln.wild_type, sites, colours, mask).block_until_ready()  # compile
    t0 = time.perf_counter()
    delta_energy(potts, aln.wild_type, sites, colours, mask).block_until_ready()
    multi = time.perf_counter() - t0
    t0 = time.perf_counter()
    delta_energy(potts, aln.wild_type, sites[:, :1], colours[:, :1]).block_until_ready()
    single_first = time.perf_counter() - t0
    return {"n": n, "max_order": K, "seconds_multi": multi, "seconds_single_incl_compile": single_first}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", default=None, help="configurations to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="independent and plm-default only")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mutations.json")
    ap.add_argument("--bm-budget", type=float, default=900.0, help="seconds of bmDCA updates (default 900)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of rho (default 2000)")
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    from jaxpotts import __version__
    from jaxpotts._report import markdown_table, write_json
    from jaxpotts.msa import read_focus_alignment, sequence_weights
    from jaxpotts.mutations import encode_mutants, fit_model, score_mutants, spearman

    if not (DMS / "DHFR.a2m").exists():
        print(f"data not found: {DMS}", file=sys.stderr)
        return 1
    aln = read_focus_alignment(DMS / "DHFR.a2m")
    mutants, y = read_dms()
    arrays = encode_mutants(mutants, aln)
    m_eff = float(np.sum(sequence_weights(aln, 0.8)))
    configs = configurations(aln.L, aln.alphabet.q, m_eff)
    names = ["independent", "plm-default"] if args.quick else (args.only or list(configs))
    unknown = [n for n in names if n not in configs]
    if unknown:
        ap.error(f"unknown configuration(s) {unknown}; choose from {list(configs)}")
    rows, timing = [], None
    report = {
        "dataset": "DYR_ECOLI_Thompson_2019 (plmc DHFR.a2m, 2363 single mutants)",
        "L": aln.L,
        "M": aln.M,
        "m_eff": m_eff,
        "rows": rows,
        "reference": REFERENCE,
        "scoring_1e5": timing,
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "jaxpotts": __version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    report["load_average_start"] = os.getloadavg()
    for name in names:
        method, options, description = configs[name]
        options = dict(options)
        data = aln
        if options.pop("unknown", "gap") == "drop":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = read_focus_alignment(DMS / "DHFR.a2m", unknown="drop")
        if method == "bm":
            potts, fields = fit_bm(data, args.bm_budget)
        else:
            res = fit_model(data, method, progress=False, **options)
            potts, h = res.potts, res.history
            fields = {
                "fit_s": res.seconds["fit"],
                "iterations": int(h.step[-1]) if h is not None and len(h.step) else 0,
                "converged": None if h is None else bool(h.converged),
                "l2": res.options.get("l2"),
                "l2_fields": res.options.get("l2_fields"),
            }
        t0 = time.perf_counter()
        dE = score_mutants(potts, data, arrays if data is aln else encode_mutants(mutants, data))
        score_s = time.perf_counter() - t0
        rho = spearman(-dE, y)
        lo, hi = bootstrap_spearman(-dE, y, n=args.bootstrap)
        row = {
            "configuration": name,
            "rho": rho,
            "rho_ci95": [lo, hi],
            "ci95": f"[{lo:.3f}, {hi:.3f}]",
            "M": data.M,
            **fields,
            "score_2363_s": score_s,
            "load_average_end": os.getloadavg(),
            "description": description,
            "prediction": [float(v) for v in -dE],  # -dE per mutant, in the CSV's order: paired comparisons
        }
        rows.append(row)
        print(
            f"{name:18s} rho = {rho:.4f} [{lo:.4f}, {hi:.4f}]  fit {row['fit_s']:.0f} s, "
            f"{row['iterations']} iterations, M = {data.M}",
            flush=True,
        )
        if name == "plm-default":
            timing = report["scoring_1e5"] = time_scoring(res.potts, aln)
            print(f"scoring 1e5 variants (orders 1-5): {timing['seconds_multi']:.3f} s", flush=True)
        write_json(args.out, report)  # after every configuration: a stopped run keeps what it measured
    table = markdown_table(
        rows, ["configuration", "rho", "ci95", "M", "fit_s", "iterations", "l2", "l2_fields", "description"]
    )
    ref = markdown_table([{"reference": k, "rho": v} for k, v in REFERENCE.items()], ["reference", "rho"])
    print("", table, "", ref, sep="\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

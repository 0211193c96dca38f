"""Mutation effects on a real deep mutational scan: Spearman of dE against measured fitness.

    python benchmarks/mutations.py                 # every configuration below (about 1 h on 2 CPU cores)
    python benchmarks/mutations.py --quick         # independent + plmDCA with the default only
    python benchmarks/mutations.py --only plm-default attention

Data: ``shared/data/dms/DYR_ECOLI_Thompson_2019`` (plmc's DHFR.a2m, focus DYR_ECOLI/1-159, 12
focus-gap columns dropped: L = 159; 2363 single mutants of Thompson et al. 2019, ProteinGym's
``score``). Each configuration runs `jaxpotts.mutations.fit_model` in this process (read, weight
at 0.8 identity, fit, symmetrise) and scores every mutant; rho is Spearman's correlation between
``-dE`` and the measured score. References on the same alignment (shared/data/dms/.../README.md):
EVmutation (plmc + EVcouplings, lambda_J = 0.2 (L - 1) = 31.6, 200 iterations) 0.435, site-
independent 0.370.

Also measures the time to score 10^5 random multi-mutants (orders 1-5) with the fitted plmDCA
model (compiled once, then timed). Prints a table and writes JSON (default
benchmarks/results/mutations.json) with the device and versions.
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
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
        "plm-contacts": (
            "plm",
            dict(PLM_DEFAULTS),
            "plmDCA, contacts' PLM_DEFAULTS (l2 = l2_fields = 0.01, ftol 3e-3)",
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
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    from jaxpotts import __version__
    from jaxpotts._report import markdown_table, write_json
    from jaxpotts.msa import read_focus_alignment, sequence_weights
    from jaxpotts.mutations import encode_mutants, fit_model, spearman

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
    for name in names:
        method, options, description = configs[name]
        res = fit_model(aln, method, progress=False, **options)
        t0 = time.perf_counter()
        dE = res.score(arrays)
        score_s = time.perf_counter() - t0
        h = res.history
        row = {
            "configuration": name,
            "rho": spearman(-dE, y),
            "fit_s": res.seconds["fit"],
            "iterations": int(h.step[-1]) if h is not None and len(h.step) else 0,
            "l2": res.options.get("l2"),
            "l2_fields": res.options.get("l2_fields"),
            "score_2363_s": score_s,
            "description": description,
        }
        rows.append(row)
        print(
            f"{name:18s} rho = {row['rho']:.4f}  fit {row['fit_s']:.0f} s, {row['iterations']} iterations", flush=True
        )
        if name == "plm-default":
            timing = report["scoring_1e5"] = time_scoring(res.potts, aln)
            print(f"scoring 1e5 variants (orders 1-5): {timing['seconds_multi']:.3f} s", flush=True)
        write_json(args.out, report)  # after every configuration: a stopped run keeps what it measured
    table = markdown_table(rows, ["configuration", "rho", "fit_s", "iterations", "l2", "l2_fields", "description"])
    ref = markdown_table([{"reference": k, "rho": v} for k, v in REFERENCE.items()], ["reference", "rho"])
    print("", table, "", ref, sep="\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

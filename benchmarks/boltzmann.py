"""Boltzmann-machine learning (bmDCA) on PF00014 and PF00763: wall time to a Pearson of connected
correlations of 0.80, 0.90, 0.95 with equilibrated chains.

    python benchmarks/boltzmann.py                 # the table of benchmarks/README.md
    python benchmarks/boltzmann.py --quick         # smoke run (small subsample, short budget)

For each family, `jaxpotts.boltzmann.fit_boltzmann` runs the default recipe
(`jaxpotts.defaults.BOLTZMANN`) with target 0.80, then resumes its checkpoint with target 0.90,
then 0.95 (a resumed fit follows the same trajectory as an uninterrupted one). Each stage stops
only when the frozen model's statistics reach the target with equilibrated chains
(`equilibration_check`), so the times are honest times-to-target; they are cumulative wall times
of the calls (compilation and the checks included). The final one- and two-site Pearson are
those of the last check. adabmDCA (PyTorch) is not run here: its default recipe reached 0.49 in
45 minutes on PF00014 on this machine (issue 16). Prints a table and writes JSON (default
benchmarks/results/boltzmann.json) with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from jaxpotts.boltzmann import fit_boltzmann
from jaxpotts.msa import read_alignment, sequence_weights

PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"
TARGETS = (0.80, 0.90, 0.95)


def run_family(name: str, budget: float, quick: bool, seed: int, options: dict) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aln = read_alignment(PFAM / f"{name}.fasta")
    seqs, q = aln.seqs, aln.alphabet.q
    if quick:
        seqs = seqs[np.random.default_rng(0).choice(len(seqs), 300, replace=False), :20]
    w = np.asarray(sequence_weights(seqs, 0.8, q=q))
    extra = {**(dict(n_chains=200, n_steps=200, chunk=20, check_sweeps=40) if quick else {}), **options}
    row = dict(family=name, M=int(seqs.shape[0]), L=int(seqs.shape[1]), M_eff=float(w.sum()), stages=[])
    wall = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "bm.ckpt"
        for target in TARGETS:
            t0 = time.perf_counter()
            res = fit_boltzmann(
                seqs, q=q, key=jax.random.PRNGKey(seed), weights=w, target=target, checkpoint_path=ck,
                resume=True, max_seconds=budget, progress=False, **extra,
            )  # fmt: skip
            wall += time.perf_counter() - t0
            stage = dict(target=target, wall_seconds=wall, **res.summary())
            stage.pop("settings")
            row["stages"].append(stage)
            print(f"{name} target {target}: reached {res.reached} after {wall:.0f} s, step {stage['steps']}, "
                  f"pearson {res.pearson:.4f}, site {res.site_pearson:.4f}, rhat {res.equilibration['rhat']:.3f}, "
                  f"tau {res.equilibration['tau']:.1f}", flush=True)  # fmt: skip
            if not res.reached:
                break
    row["settings"] = res.settings
    row["pearson"], row["site_pearson"] = res.pearson, res.site_pearson
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["PF00014", "PF00763"])
    parser.add_argument("--budget", type=float, default=900.0, help="seconds of training per family (default 900)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 sequences, 20 columns, 60 s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="recipe overrides, e.g. optimizer=sgd learning_rate=1",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "boltzmann.json")
    args = parser.parse_args()
    budget = 60.0 if args.quick else args.budget
    load_before = os.getloadavg()
    options = {k: (v if k in ("optimizer", "start") else float(v)) for k, v in (s.split("=", 1) for s in args.set)}
    options = {
        k: int(v) if isinstance(v, float) and v.is_integer() and k != "learning_rate" else v for k, v in options.items()
    }
    rows = [run_family(f, budget, args.quick, args.seed, options) for f in args.families]
    print(
        "\n| family | L | M_eff | "
        + " | ".join(f"time to {t}" for t in TARGETS)
        + " | final C Pearson | site Pearson |"
    )
    print("|---|---|---|" + "---|" * len(TARGETS) + "---|---|")
    for r in rows:
        times = {s["target"]: s["wall_seconds"] for s in r["stages"] if s["reached"]}
        cells = [f"{times[t]:.0f} s" if t in times else "not reached" for t in TARGETS]
        print(f"| {r['family']} | {r['L']} | {r['M_eff']:.0f} | " + " | ".join(cells)
              + f" | {r['pearson']:.3f} | {r['site_pearson']:.3f} |")  # fmt: skip
    out = dict(
        rows=rows,
        overrides=options,
        budget_seconds=budget,
        quick=args.quick,
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), backend=jax.default_backend()),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float))
    print(f"load average before {load_before}, after {out['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()

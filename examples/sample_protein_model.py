r"""Sample a Potts model fitted to a protein family and compare its statistics with the data.

The generation check of DCA: fit plmDCA to a Pfam alignment (`jaxpotts.contacts.pipeline`),
symmetrise its couplings into a joint model, draw sequences with the package's Gibbs sampler,
and compare the samples' one-site frequencies $f_i(a)$ and connected correlations
$C_{ij}(a,b) = f_{ij}(a,b) - f_i(a) f_j(b)$ with those of the weighted alignment
(`jaxpotts.statistics.generation_check`): Pearson r and the slope through the origin.

Pseudo-likelihood fits the L conditionals, not the joint distribution; a plmDCA model typically
reproduces the one-site frequencies well and the correlations only in part (r well below one,
slope off one), which is why generative DCA uses Boltzmann-machine learning instead. The check
says how far the model is from generative on this family, and the sampler's own diagnostics
(energy autocorrelation time, split R-hat over the chains) say whether the chains mixed.

    python examples/sample_protein_model.py --quick     # PF00014, 500 chains (about a minute)
    python examples/sample_protein_model.py             # PF00014 and PF00763, 1000 chains
    python examples/sample_protein_model.py --smoke     # tiny subsample, seconds (tests)

Writes ``statistics_<family>.png/.pdf`` (model against data for f_i and C_ij) and
``generation.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from jaxpotts.sharding import use_cpu_cores

PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"
FAMILIES = {"PF00014": "PF00014.fasta", "PF00763": "PF00763.fasta"}
SETTINGS = {
    "full": dict(families=["PF00014", "PF00763"], n_chains=1000, n_burnin=2000, n_samples=10, thin=100, fit={}),
    "quick": dict(families=["PF00014"], n_chains=500, n_burnin=1000, n_samples=10, thin=50, fit={}),
    "smoke": dict(
        families=["PF00014"], n_chains=40, n_burnin=20, n_samples=4, thin=5, fit=dict(n_steps=10), subsample=300
    ),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny settings that only exercise the pipeline (tests)")
    ap.add_argument("--pfam", type=Path, default=PFAM)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("sample_protein_out"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    use_cpu_cores()  # the sampler splits its chains over one JAX device per core
    import jax
    from matplotlib.figure import Figure

    from jaxpotts import contacts, msa, plotting, statistics

    cfg = SETTINGS["smoke" if args.smoke else "quick" if args.quick else "full"]
    say = (lambda *a: None) if args.quiet else print
    progress = False if args.quiet else None
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"settings": {k: v for k, v in cfg.items() if k != "fit"}, "devices": [str(d) for d in jax.devices()]}
    for fam in cfg["families"]:
        aln = msa.read_alignment(args.pfam / FAMILIES[fam])
        if "subsample" in cfg:
            keep = np.sort(np.random.default_rng(0).choice(aln.M, cfg["subsample"], replace=False))
            aln = dataclasses.replace(
                aln, seqs=aln.seqs[keep], rows=aln.rows[keep], names=tuple(aln.names[i] for i in keep)
            )
        fitted = contacts.pipeline(aln, "plm", progress=progress, **cfg["fit"])
        check = statistics.generation_check(
            fitted.potts,
            aln.seqs,
            fitted.weights,
            key=jax.random.PRNGKey(args.seed),
            n_chains=cfg["n_chains"],
            n_burnin=cfg["n_burnin"],
            n_samples=cfg["n_samples"],
            thin=cfg["thin"],
            progress=progress,
            arrays=True,
        )
        arrays = check.pop("arrays")
        report[fam] = check
        say(
            f"{fam}: L = {aln.L}, M_eff = {fitted.m_eff:.0f}; {check['n_samples']} samples after {cfg['n_burnin']} "
            f"sweeps ({check['seconds']:.1f} s): r(f_i) = {check['site']['pearson']:.3f}, r(C_ij) = "
            f"{check['connected']['pearson']:.3f}, slope(C_ij) = {check['connected']['slope']:.2f}; sampler tau = "
            f"{check['sampler']['tau']:.2f} records, R-hat = {check['sampler']['rhat']:.3f}"
        )
        fig = Figure(figsize=(10, 4.6), layout="constrained")
        for k, (name, label) in enumerate((("site", "f_i(a)"), ("connected", "C_ij(a,b), i < j"))):
            ax = fig.add_subplot(1, 2, k + 1)
            x, y = np.ravel(arrays[f"{name}_data"]), np.ravel(arrays[f"{name}_model"])
            ax.scatter(x, y, s=3, alpha=0.3, linewidths=0)
            lim = [min(x.min(), y.min()), max(x.max(), y.max())]
            ax.plot(lim, lim, color="0.4", lw=0.8)
            ax.set_xlabel(f"data {label}")
            ax.set_ylabel(f"model samples {label}")
            ax.set_title(f"{fam}: r = {check[name]['pearson']:.3f}, slope = {check[name]['slope']:.2f}")
        plotting.save_figure(fig, args.out / f"statistics_{fam}.png")
    (args.out / "generation.json").write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {args.out}/generation.json and statistics_<family>.png/pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())

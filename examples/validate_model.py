r"""Validate a Potts model as a generator of its protein family (`jaxpotts.generative.validate`).

Holds out a random 20% of a Pfam alignment, fits plmDCA (`jaxpotts.contacts.pipeline`, the
default) or bmDCA (``--method bm``: `jaxpotts.boltzmann.fit_boltzmann`, the default recipe, at
most ``--budget`` seconds) to the rest, or loads a saved model (``--model``), samples it with the package's Gibbs chains, and compares
the generated sequences with the weighted natural ones: one-site frequencies, connected two- and
three-site correlations (Pearson r and slope against the training and the held-out sequences,
with training against held-out as the noise floor), PCA, the Hamming distance to the nearest
natural sequence, energies and the chains' equilibration (docs/validate.md).

    python examples/validate_model.py --quick     # PF00014, 1000 chains (a few minutes on 2 cores)
    python examples/validate_model.py             # PF00014 and PF00763
    python examples/validate_model.py --smoke     # tiny subsample, seconds (tests)
    python examples/validate_model.py --quick --method bm --budget 300   # a bmDCA fit instead
    python examples/validate_model.py --model OUT/model.eqx --alignment ALN.fasta

Writes ``validation_<family>/validation.png/.pdf``, ``.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from jaxpotts.sharding import use_cpu_cores

PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"
FAMILIES = {"PF00014": "PF00014.fasta", "PF00763": "PF00763.fasta"}
SAMPLER = dict(n_chains=1000, n_burnin=1000, n_samples=10, thin=20)
SETTINGS = {
    "full": dict(families=["PF00014", "PF00763"], sampler=SAMPLER, fit={}, n_triplets=50_000),
    "quick": dict(families=["PF00014"], sampler=SAMPLER, fit={}, n_triplets=50_000),
    "smoke": dict(
        families=["PF00014"],
        sampler=dict(n_chains=40, n_burnin=20, n_samples=10, thin=2),
        fit=dict(n_steps=10),
        fit_bm=dict(n_chains=40, n_steps=20, chunk=10, check_sweeps=8),
        n_triplets=2000,
        subsample=300,
    ),
}


def _subset(aln, rows):
    return dataclasses.replace(aln, seqs=aln.seqs[rows], rows=aln.rows[rows], names=tuple(aln.names[i] for i in rows))


def _fit_bm(train, key, budget: float, progress, overrides: dict):
    """bmDCA on the training part: the default recipe (`jaxpotts.defaults.BOLTZMANN`), weights
    at identity 0.8, stopped after `budget` seconds if the target is not reached first."""
    from jaxpotts.boltzmann import fit_boltzmann
    from jaxpotts.msa import sequence_weights

    w = sequence_weights(train.seqs, 0.8, q=train.alphabet.q)
    return fit_boltzmann(
        train.seqs, q=train.alphabet.q, key=key, weights=w, max_seconds=budget, progress=progress, **overrides
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny settings that only exercise the pipeline (tests)")
    ap.add_argument("--pfam", type=Path, default=PFAM)
    ap.add_argument("--method", choices=["plm", "bm"], default="plm", help="the fit: plmDCA (default) or bmDCA")
    ap.add_argument("--budget", type=float, default=900.0, help="bmDCA: at most this many seconds (default 900)")
    ap.add_argument("--model", type=Path, default=None, help="validate this saved model instead of fitting one")
    ap.add_argument("--alignment", type=Path, default=None, help="the natural sequences of --model")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("validate_model_out"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if (args.model is None) != (args.alignment is None):
        ap.error("--model and --alignment go together")
    if args.model is not None and args.method != "plm":
        ap.error("--method fits a model; --model validates a saved one")
    use_cpu_cores()  # the sampler splits its chains over one JAX device per core
    import jax

    from jaxpotts import contacts, generative, msa, serialization

    cfg = SETTINGS["smoke" if args.smoke else "quick" if args.quick else "full"]
    say = (lambda *a: None) if args.quiet else print
    progress = False if args.quiet else None
    families = {"model": args.alignment} if args.model else {f: args.pfam / FAMILIES[f] for f in cfg["families"]}
    for fam, path in families.items():
        key = jax.random.PRNGKey(args.seed)
        k_split, k_fit, k_validate = jax.random.split(key, 3)
        aln = msa.read_alignment(path)
        if "subsample" in cfg:
            aln = _subset(aln, np.sort(np.random.default_rng(0).choice(aln.M, cfg["subsample"], replace=False)))
        train_rows, test_rows = generative.split_sequences(k_split, aln.M, args.test_fraction)
        train, test = _subset(aln, train_rows), _subset(aln, test_rows)
        t0 = time.perf_counter()
        fit = None
        if args.model is not None:
            model = serialization.load_model(args.model)[0]
        elif args.method == "bm":
            fit = _fit_bm(train, k_fit, args.budget, progress, cfg.get("fit_bm", {}))
            model = fit.model
        else:
            model = contacts.pipeline(train, "plm", key=k_fit, progress=progress, **cfg["fit"]).potts
        t_fit = time.perf_counter() - t0
        report = generative.validate(
            model,
            train.seqs,
            key=k_validate,
            test_seqs=test.seqs,
            sampler={**cfg["sampler"], "progress": progress},
            n_triplets=cfg["n_triplets"],
        )
        report.summary["seconds"] = {"fit": t_fit, "validate": time.perf_counter() - t0 - t_fit}
        report.summary["fit"] = {"method": "model" if args.model else args.method}
        if fit is not None:
            report.summary["fit"].update(fit.summary())
        folder = args.out / f"validation_{fam}"
        generative.write_report(report, folder)
        say(
            f"{fam}: fit ({report.summary['fit']['method']}) {t_fit:.0f} s, validation {report.summary['seconds']['validate']:.0f} s",
            report.markdown(),
        )
    say(f"wrote {args.out}/validation_<family>/validation.png/.pdf, .json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

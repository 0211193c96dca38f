"""`jaxpotts validate ALIGNMENT MODEL`: how well a saved model generates its family
(jaxpotts.generative.validate): statistics, held-out comparison, PCA, Hamming, energies, chains."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    UserError,
    add_common,
    add_memory_option,
    add_unknown_option,
    fraction,
    load_saved_model,
    non_negative_int,
    positive_int,
    say,
    show_progress,
)


def _read(path: Path, args, what: str):
    from ..msa import read_alignment

    if not path.exists():
        raise UserError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give an alignment file (FASTA, A2M/A3M or Stockholm)")
    return read_alignment(
        path,
        alphabet=args.alphabet,
        unknown=args.unknown,
        max_gap_fraction=args.max_gap_fraction,
        max_column_gap_fraction=args.max_column_gap_fraction,
    )


def _inputs(args):
    """(model, note, training alignment, held-out alignment or None), sizes checked."""
    model, note = load_saved_model(args.model)
    aln = _read(args.alignment, args, "alignment")
    test = None if args.test_alignment is None else _read(args.test_alignment, args, "test alignment")
    for a, path in ((aln, args.alignment), (test, args.test_alignment)):
        if a is not None and (a.L, a.alphabet.q) != (model.L, model.q):
            raise UserError(
                f"{args.model} has L = {model.L}, q = {model.q} but {path} has L = {a.L} match columns, "
                f"q = {a.alphabet.q} (read it with the column and gap options the model was fitted with)"
            )
    if test is not None and args.test_fraction:
        raise UserError("give --test-alignment or --test-fraction, not both")
    return model, note, aln, test


def run(args) -> dict:
    import time

    import jax
    import numpy as np

    from ..generative import split_sequences, validate, write_report
    from ..msa import sequence_weights

    model, note, aln, test = _inputs(args)
    if note:
        say(args, f"note: {note}")
    t0 = time.perf_counter()
    key = jax.random.PRNGKey(args.seed)
    train_seqs, test_seqs = aln.seqs, None if test is None else test.seqs
    if args.test_fraction:
        train_rows, test_rows = split_sequences(jax.random.fold_in(key, 1), aln.M, args.test_fraction)
        train_seqs, test_seqs = aln.seqs[train_rows], aln.seqs[test_rows]
    weigh = lambda s: np.asarray(sequence_weights(s, args.theta, q=model.q), np.float64)  # noqa: E731
    report = validate(
        model,
        train_seqs,
        key=key,
        weights=weigh(train_seqs),
        test_seqs=test_seqs,
        test_weights=None if test_seqs is None else weigh(test_seqs),
        sampler=dict(
            n_chains=args.chains,
            n_burnin=args.sweeps,
            n_samples=args.samples,
            thin=args.thin,
            progress=show_progress(args),
        ),
        n_triplets=args.triplets,
        n_hamming=args.hamming,
        max_memory=args.max_memory,
    )
    seconds = time.perf_counter() - t0
    report.summary["inputs"] = {
        "alignment": str(args.alignment),
        "model": str(args.model),
        "test_alignment": None if args.test_alignment is None else str(args.test_alignment),
        "test_fraction": args.test_fraction,
        "theta": args.theta,
        "seed": args.seed,
        "seconds": seconds,
    }
    written = write_report(report, args.out, figure=not args.no_figure)
    say(args, report.markdown(), f"wrote {', '.join(p.name for p in written)} to {args.out} ({seconds:.1f} s)")
    return report.summary


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="how well a saved model generates its family (statistics, PCA, Hamming, energies)",
        description="Sample a model saved by 'jaxpotts fit' or 'jaxpotts contacts --save-model' (plmDCA, "
        "factored attention or any Potts model; non-symmetric couplings are symmetrised) and compare the "
        "generated sequences with the weighted natural ones: one-site frequencies, connected two- and "
        "three-site correlations (Pearson r, slope) against the training and the held-out sequences, "
        "PCA, Hamming distance to the nearest natural sequence, energies and the chains' equilibration. "
        "Writes validation.json, validation.md and validation.png/.pdf (docs/validate.md).",
    )
    p.add_argument("alignment", type=Path, help="the natural sequences: FASTA, A2M/A3M or Stockholm (gzip ok)")
    p.add_argument("model", type=Path, help="a saved model (MODEL + MODEL.json, e.g. OUT/model.eqx of 'jaxpotts fit')")
    g = p.add_argument_group("natural sequences")
    g.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.0,
        help="hold out this random fraction of ALIGNMENT (seeded): genuinely held out only if the model "
        "was fitted without it (default: 0, no held-out comparison)",
    )
    g.add_argument(
        "--test-alignment", type=Path, default=None, help="held-out natural sequences the model was not fitted on"
    )
    g.add_argument("--alphabet", default="protein", help="protein (default), rna, binary or a string of symbols")
    add_unknown_option(g)
    g.add_argument(
        "--theta", type=fraction, default=0.8, help="identity threshold of the sequence weights (default: 0.8)"
    )
    g.add_argument("--max-gap-fraction", type=fraction, default=None, help="drop sequences with more gaps (as in fit)")
    g.add_argument(
        "--max-column-gap-fraction", type=fraction, default=None, help="drop columns with more gaps (as in fit)"
    )
    g = p.add_argument_group("sampler (jaxpotts.generative.SAMPLER_DEFAULTS)")
    g.add_argument("--chains", type=positive_int, default=1000, help="independent Gibbs chains (default: 1000)")
    g.add_argument("--sweeps", type=non_negative_int, default=1000, help="burn-in sweeps (default: 1000)")
    g.add_argument(
        "--samples", type=positive_int, default=10, help="recorded samples per chain (default: 10, >= 10 for R-hat)"
    )
    g.add_argument("--thin", type=positive_int, default=20, help="sweeps between recorded samples (default: 20)")
    g = p.add_argument_group("statistics")
    g.add_argument("--triplets", type=positive_int, default=50_000, help="three-site entries compared (default: 50000)")
    g.add_argument(
        "--hamming", type=positive_int, default=2000, help="sequences per set in the Hamming search (default: 2000)"
    )
    g.add_argument("--no-figure", action="store_true", help="skip validation.png/.pdf")
    add_memory_option(p)
    add_common(p, "jaxpotts_validate")
    p.set_defaults(func=run)

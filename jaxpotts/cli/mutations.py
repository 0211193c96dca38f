"""`jaxpotts score` and `jaxpotts scan`: mutation effects from the command line (jaxpotts.mutations).

    jaxpotts score ALIGNMENT MUTANTS.csv     dE of the listed variants (+ Spearman against a measured column)
    jaxpotts scan ALIGNMENT                  dE of every single mutant of the focus (CSV, NPZ, heatmap)

Both fit a model of the focus alignment with `jaxpotts.mutations.fit_model` (plmDCA with
`MUTATION_DEFAULTS` by default) or load one saved by `jaxpotts fit` / `save_model`
(``--model-file``).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from .._report import markdown_table, write_json
from ._common import (
    UserError,
    add_common,
    add_unknown_option,
    fraction,
    non_negative_float,
    positive_int,
    say,
    show_progress,
)

_MEASURED_NAMES = ("score", "DMS_score")


# ----------------------------------------------------------------------------- shared


def _model_options(parser) -> None:
    g = parser.add_argument_group("model (defaults: jaxpotts.mutations.MUTATION_DEFAULTS)")
    g.add_argument(
        "--method",
        choices=("plm", "independent", "attention"),
        default="plm",
        help="plm: plmDCA, symmetrised (default); independent: site-independent frequencies; "
        "attention: factored attention (contacts' ATTENTION_DEFAULTS)",
    )
    g.add_argument(
        "--model-file",
        type=Path,
        default=None,
        metavar="MODEL",
        help="score with a model saved by 'jaxpotts fit' / save_model instead of fitting one "
        "(its L must be the focus's sites, or the alignment's match columns)",
    )
    g.add_argument(
        "--focus",
        default=None,
        help="focus (wild-type) sequence: its name, or the part before '/' (default: the first sequence)",
    )
    g.add_argument("--alphabet", default="protein", help="protein (default), rna, binary or a string of symbols")
    add_unknown_option(g)
    g.add_argument(
        "--theta", type=fraction, default=None, help="identity threshold of the sequence weights (default 0.8)"
    )
    g.add_argument(
        "--l2",
        type=non_negative_float,
        default=None,
        help="lambda_J, per-N_eff convention (default plm: 0.01 (q-1)(L-1) / N_eff, EVmutation's rule)",
    )
    g.add_argument("--l2-fields", type=non_negative_float, default=None, help="lambda_h (default plm: 0.01 / N_eff)")
    g.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="most optimiser steps (default plm: 1000 L-BFGS iterations, stopping at convergence)",
    )
    g.add_argument(
        "--gaps",
        choices=("state", "missing"),
        default=None,
        help="plm/attention: gaps as a 21st state or as missing data (plmc -g; "
        "default plm: MUTATION_DEFAULTS['gaps'], attention: state)",
    )
    g.add_argument(
        "--couplings",
        choices=("asymmetric", "symmetric"),
        default=None,
        help="plm: L independent conditionals symmetrised afterwards (asymmetric plmDCA) or one coupling "
        "per pair inside the objective (symmetric, plmc's; default MUTATION_DEFAULTS['couplings'])",
    )
    g.add_argument(
        "--pseudocount",
        type=non_negative_float,
        default=None,
        help="independent: effective sequences added per state (default 0.5)",
    )
    g.add_argument("--save-model", action="store_true", help="also write the fitted model (model.eqx + JSON)")


# Fit options of the command line: option name -> (argparse attribute, flag).
_FIT_FLAGS = {
    "l2": ("l2", "--l2"),
    "l2_fields": ("l2_fields", "--l2-fields"),
    "n_steps": ("steps", "--steps"),
    "pseudocount": ("pseudocount", "--pseudocount"),
    "gaps": ("gaps", "--gaps"),
    "couplings": ("couplings", "--couplings"),
}


def _prepare(args):
    """(MutationModel-like fields as a dict) from a fit or a saved model."""
    import jax

    from .. import msa, mutations
    from ._common import load_saved_model

    path: Path = args.alignment
    if not path.exists():
        raise UserError(f"alignment file {path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give an alignment file (FASTA, A2M/A3M or Stockholm)")
    aln = msa.read_focus_alignment(path, args.focus, alphabet=args.alphabet, unknown=args.unknown)
    options = {k: getattr(args, attr) for k, (attr, _) in _FIT_FLAGS.items() if getattr(args, attr) is not None}
    if args.model_file is not None:
        if options:
            raise UserError(f"{_FIT_FLAGS[next(iter(options))][1]} sets up a fit, but --model-file gives the model")
        potts, note = load_saved_model(args.model_file)
        if note:
            say(args, f"note: {note}")
        if potts.L != aln.L and potts.L == aln.n_columns:
            aln = msa.read_focus_alignment(
                path, args.focus, alphabet=args.alphabet, unknown=args.unknown, keep_focus_gaps=True
            )
            say(
                args,
                f"note: the model has L = {potts.L}, every match column of the alignment: focus-gap columns "
                "are kept as sites",
            )
        if (potts.L, potts.q) != (aln.L, aln.alphabet.q):
            raise UserError(
                f"{args.model_file} has L = {potts.L}, q = {potts.q} but the focus alignment has "
                f"L = {aln.L} sites (of {aln.n_columns} match columns), q = {aln.alphabet.q}"
            )
        return dict(
            potts=potts,
            alignment=aln,
            method="model-file",
            m_eff=None,
            steps=None,
            seconds={"fit": 0.0},
            options={"model_file": str(args.model_file)},
            model=None,
        )
    if args.method != "independent" and args.pseudocount is not None:
        raise UserError("--pseudocount applies to --method independent")
    if args.method == "independent" and any(k in options for k in ("l2", "l2_fields", "n_steps", "gaps")):
        raise UserError("--l2, --l2-fields, --steps and --gaps apply to plm and attention fits")
    if args.method != "plm" and "couplings" in options:
        raise UserError("--couplings applies to --method plm")
    res = mutations.fit_model(
        aln, args.method, key=jax.random.PRNGKey(args.seed), theta=args.theta, progress=show_progress(args), **options
    )
    h = res.history
    out = dict(
        potts=res.potts,
        alignment=aln,
        method=args.method,
        m_eff=res.m_eff,
        seconds=res.seconds,
        steps=int(h.step[-1]) if h is not None and len(h.step) else None,
        options=res.options,
        model=res.model,
    )
    if args.save_model:
        from ..training import save_model

        args.out.mkdir(parents=True, exist_ok=True)
        save_model(
            args.out / "model.eqx",
            res.model if args.method != "independent" else res.potts,
            method=args.method,
            L=aln.L,
            q=int(aln.alphabet.q),
            focus=aln.focus.name,
        )
    return out


def _describe(args, prep) -> str:
    aln = prep["alignment"]
    what = (
        f"model {args.model_file}"
        if prep["method"] == "model-file"
        else f"{prep['method']} fit in {prep['seconds']['fit']:.1f} s"
        + (f" ({prep['steps']} iterations)" if prep["steps"] is not None else "")
    )
    m_eff = "" if prep["m_eff"] is None else f", M_eff = {prep['m_eff']:.1f}"
    return (
        f"{args.alignment.name}: focus {aln.focus.name}, L = {aln.L} sites (of {aln.n_columns} match columns), "
        f"M = {aln.M}{m_eff}; {what}"
    )


def _report_base(args, prep) -> dict:
    import jax

    aln = prep["alignment"]
    return {
        "alignment": str(args.alignment),
        "focus": aln.focus.name,
        "L": aln.L,
        "M": aln.M,
        "n_sequences_file": aln.n_sequences,
        "unknown": args.unknown,
        "n_columns_file": aln.n_columns,
        "m_eff": prep["m_eff"],
        "method": prep["method"],
        "steps": prep["steps"],
        "seconds": prep["seconds"],
        "options": prep["options"],
        "devices": [str(d) for d in jax.devices()],
    }


# ----------------------------------------------------------------------------- score


def _read_table(path: Path) -> tuple[list[str], list[dict]]:
    if not path.exists():
        raise UserError(f"mutant table {path} does not exist")
    with open(path, newline="") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        delimiter = "\t" if path.suffix in (".tsv", ".tab") or ("\t" in sample and "," not in sample) else ","
        reader = csv.DictReader(fh, delimiter=delimiter)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    if not columns:
        raise UserError(f"{path} is empty (expected a header line with a 'mutant' column)")
    if not rows:
        raise UserError(f"{path} has a header but no rows")
    return columns, rows


def _score(args) -> dict:
    import numpy as np

    from .. import mutations

    columns, rows = _read_table(args.mutants)
    if args.mutant_column not in columns:
        raise UserError(
            f"{args.mutants} has no column {args.mutant_column!r} (columns: {', '.join(columns)}); "
            "choose it with --mutant-column"
        )
    measured = args.measured
    if measured is None:
        measured = next((c for c in _MEASURED_NAMES if c in columns), None)
    elif measured not in columns:
        raise UserError(f"{args.mutants} has no column {measured!r} for --measured (columns: {', '.join(columns)})")
    for name in ("dE", "prediction"):
        if name in columns:
            raise UserError(f"{args.mutants} already has a column {name!r}, which score writes")
    y = None
    if measured is not None:
        y = np.full(len(rows), np.nan)
        for k, r in enumerate(rows):
            text = (r.get(measured) or "").strip()
            if text == "" or text.lower() in ("nan", "na"):
                continue
            try:
                y[k] = float(text)
            except ValueError:
                raise UserError(
                    f"{args.mutants}: row {k + 2}: measured value {text!r} in column {measured!r} is not a number"
                ) from None
    prep = _prepare(args)
    aln = prep["alignment"]
    arrays = mutations.encode_mutants([r[args.mutant_column] for r in rows], aln)
    t0 = time.perf_counter()
    dE = mutations.score_mutants(prep["potts"], aln, arrays)
    t_score = time.perf_counter() - t0
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scores.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*columns, "dE", "prediction"])
        for r, d in zip(rows, dE, strict=False):
            w.writerow([r.get(c, "") for c in columns] + [f"{d:.6g}", f"{-d:.6g}"])
    report = {
        **_report_base(args, prep),
        "mutants": str(args.mutants),
        "n_variants": len(rows),
        "max_order": int(arrays.sites.shape[1]),
        "score_seconds": t_score,
        "prediction": "prediction = -dE = log p(mutant) / p(wild type); higher = predicted fitter",
    }
    lines = [
        _describe(args, prep),
        f"scored {len(rows)} variants (up to {arrays.sites.shape[1]} substitutions) in {t_score:.3f} s",
    ]
    if y is not None:
        ok = np.isfinite(y)
        if ok.sum() < 2:
            raise UserError(f"column {measured!r} has fewer than 2 numeric values")
        rho = mutations.spearman(-dE[ok], y[ok])
        report.update(measured=measured, n_measured=int(ok.sum()), spearman=rho)
        lines.append(f"Spearman rho(prediction, {measured}) = {rho:.4f} over {int(ok.sum())} variants")
    write_json(out / "score.json", report)
    order = np.argsort(dE, kind="stable")
    top = [{"mutant": arrays.labels[k], "dE": float(dE[k])} for k in order[:5]]
    lines += [
        "",
        "predicted fittest (lowest dE):",
        markdown_table(top, ["mutant", "dE"]),
        "",
        f"wrote {out}/scores.csv, score.json"
        + (", model.eqx" if args.save_model and prep["model"] is not None else ""),
    ]
    say(args, *lines)
    return report


def add_score(subparsers) -> None:
    """The `jaxpotts score` subcommand."""
    p = subparsers.add_parser(
        "score",
        help="mutation effects: dE of listed variants of the focus sequence (+ Spearman)",
        description="Fit a model of the alignment's focus columns (plmDCA with jaxpotts.mutations.MUTATION_DEFAULTS "
        "unless --method or --model-file say otherwise) and score the variants of a CSV table "
        "(column 'mutant': A24G or A24G:C30T, residue numbers of the focus). Writes scores.csv (the "
        "table plus dE = E(mutant) - E(wild type) and prediction = -dE) and score.json; with a measured "
        "column (--measured, or a column named score / DMS_score) also Spearman's rho.",
    )
    p.add_argument(
        "alignment", type=Path, help="FASTA, A2M/A3M or Stockholm alignment; the focus is its first sequence"
    )
    p.add_argument("mutants", type=Path, help="CSV (or TSV) table with a header and a mutant column")
    p.add_argument("--mutant-column", default="mutant", help="column with the mutant strings (default: mutant)")
    p.add_argument(
        "--measured",
        default=None,
        help="column with measured fitness for Spearman (default: 'score' or 'DMS_score' if present)",
    )
    _model_options(p)
    add_common(p, "jaxpotts_score")
    p.set_defaults(func=score_command)


def score_command(args) -> dict:
    """Handler of `jaxpotts score`."""
    return _score(args)


# ----------------------------------------------------------------------------- scan


def scan_command(args) -> dict:
    """Handler of `jaxpotts scan`."""
    import numpy as np

    from .. import mutations
    from ..plotting import save_figure

    default_gaps = mutations.MUTATION_DEFAULTS["gaps"] if args.method == "plm" else "state"
    if args.include_gap and args.model_file is None and (args.gaps or default_gaps) == "missing":
        raise UserError(
            "--include-gap: this fit treats gaps as missing data (gaps='missing'), so the model has no gap "
            "state to score; add --gaps state"
        )
    prep = _prepare(args)
    aln = prep["alignment"]
    t0 = time.perf_counter()
    scan = np.asarray(mutations.single_mutant_scan(prep["potts"], aln.wild_type), np.float64)
    t_scan = time.perf_counter() - t0
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    symbols, gap = aln.alphabet.symbols, aln.alphabet.gap_index
    wt = aln.wild_type
    letters = aln.focus.letters
    n_rows = 0
    with open(out / "scan.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mutant", "site", "residue", "wt", "mt", "dE", "prediction"])
        for i in range(aln.L):
            res = int(aln.focus.residues[i])
            if res < 0:
                continue  # a focus gap kept as a site: no residue to mutate
            for a in range(aln.alphabet.q):
                if a == wt[i] or (a == gap and not args.include_gap):
                    continue
                w.writerow(
                    [
                        f"{letters[i]}{res}{symbols[a]}",
                        i,
                        res,
                        letters[i],
                        symbols[a],
                        f"{scan[i, a]:.6g}",
                        f"{-scan[i, a]:.6g}",
                    ]
                )
                n_rows += 1
    np.savez_compressed(
        out / "scan.npz",
        dE=scan,
        residues=aln.focus.residues,
        wild_type=wt,
        alphabet=np.array(symbols),
        columns=aln.columns,
    )
    fig = mutations.plot_scan(scan, aln, include_gap=args.include_gap)
    save_figure(fig, out / "scan.png")
    report = {
        **_report_base(args, prep),
        "n_mutants": n_rows,
        "scan_seconds": t_scan,
        "include_gap": bool(args.include_gap),
    }
    write_json(out / "scan.json", report)
    keep = [a for a in range(aln.alphabet.q) if a != gap or args.include_gap]
    site_mean = np.array([np.mean([scan[i, a] for a in keep if a != wt[i]]) for i in range(aln.L)])
    order = np.argsort(-site_mean, kind="stable")[:5]
    top = [{"residue": int(aln.focus.residues[i]), "wt": letters[i], "mean dE": float(site_mean[i])} for i in order]
    say(
        args,
        _describe(args, prep),
        f"scanned {n_rows} single mutants in {t_scan:.3f} s",
        "",
        "least tolerant positions (highest mean dE):",
        markdown_table(top, ["residue", "wt", "mean dE"]),
        "",
        f"wrote {out}/scan.csv, scan.npz, scan.json, scan.png/pdf"
        + (", model.eqx" if args.save_model and prep["model"] is not None else ""),
    )
    return report


def add_scan(subparsers) -> None:
    """The `jaxpotts scan` subcommand."""
    p = subparsers.add_parser(
        "scan",
        help="mutation effects: dE of every single mutant of the focus sequence (CSV, NPZ, heatmap)",
        description="Fit a model of the alignment's focus columns (as 'jaxpotts score') and compute dE of every "
        "single substitution of the focus. Writes scan.csv (one row per mutant), scan.npz (dE as an "
        "L x q matrix, residues, wild type, alphabet), scan.json and the heatmap scan.png/pdf.",
    )
    p.add_argument(
        "alignment", type=Path, help="FASTA, A2M/A3M or Stockholm alignment; the focus is its first sequence"
    )
    p.add_argument("--include-gap", action="store_true", help="also list substitutions by a gap (deletions)")
    _model_options(p)
    add_common(p, "jaxpotts_scan")
    p.set_defaults(func=scan_command)


def add_parser(sub) -> None:
    """Both subcommands of this module."""
    add_score(sub)
    add_scan(sub)

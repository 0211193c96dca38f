"""`jaxpotts contacts ALIGNMENT`: residue contacts of a protein family."""

from __future__ import annotations

import math
import time
from pathlib import Path

from .._files import atomic_open, atomic_write
from .._report import markdown_table, write_json
from ..memory import format_bytes, memory_budget
from ._common import (
    UserError,
    add_common,
    add_memory_option,
    add_unknown_option,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
    say,
    show_progress,
)


def run(args) -> dict:
    import jax

    from .. import contacts

    path = _check_inputs(args)
    options = _fit_options(args)
    # The fit gets the seed's key itself, so `jaxpotts contacts X --seed s` and
    # `jaxpotts.contacts.predict(X, key=PRNGKey(s))` give the same scores; the check another.
    k_fit = jax.random.PRNGKey(args.seed)
    k_gen = jax.random.fold_in(k_fit, 1)
    t0 = time.perf_counter()
    aln = _read(args, path)
    t_read = time.perf_counter() - t0
    estimate = contacts.fit_memory(aln, args.method, max_memory=args.max_memory, **options)
    budget, source = memory_budget(args.max_memory)
    source = source if args.max_memory is None else "--max-memory"
    say(
        args,
        f"{path.name}: L = {aln.L}, M = {aln.M}; memory estimate of the {args.method} fit: {estimate}"
        + (f", budget {format_bytes(budget)} ({source})" if budget is not None and math.isfinite(budget) else ""),
    )
    res = contacts.pipeline(
        aln,
        args.method,
        key=k_fit,
        theta=args.theta,
        alphabet=args.alphabet,
        max_gap_fraction=args.max_gap_fraction,
        progress=show_progress(args),
        max_memory=args.max_memory,
        **options,
    )
    res.seconds.update(read=t_read, total=res.seconds["total"] + t_read)  # read here, not by the pipeline
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report = _report(args, path, res)
    report["memory_estimate_bytes"] = estimate.total
    D = None
    if args.distances is not None:  # indexed by the file's match columns; D: over the sites
        D = res.site_distances(contacts.read_distances(args.distances, L=res.alignment.n_columns))
        report["precision"] = res.precision(D, min_sep=args.min_sep)
        report["contact_definition"] = {"threshold_angstrom": 8.0, "min_separation": args.min_sep}
    pairs = contacts.ranked_pairs(res.scores, args.min_sep)
    _write_outputs(args, out, path, res, pairs, D, report, k_gen)
    say(args, *_summary_lines(args, out, path, res, pairs, D, report))
    return report


def _read(args, path: Path):
    """The alignment (with --focus: its focus columns, `read_focus_alignment`)."""
    from ..msa import read_alignment, read_focus_alignment

    if args.focus is None:
        return read_alignment(
            path, alphabet=args.alphabet, unknown=args.unknown, max_gap_fraction=args.max_gap_fraction
        )
    return read_focus_alignment(
        path, args.focus or None, alphabet=args.alphabet, unknown=args.unknown, max_gap_fraction=args.max_gap_fraction
    )


def _check_inputs(args) -> Path:
    """The alignment's path, after checking that it and the distance file exist."""
    path: Path = args.alignment
    if not path.exists():
        raise UserError(f"alignment file {path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give an alignment file (FASTA, A2M/A3M or Stockholm)")
    if args.distances is not None and not args.distances.exists():
        raise UserError(f"distance file {args.distances} does not exist")
    return path


def _fit_options(args) -> dict:
    """The options of `jaxpotts.contacts.pipeline` given on the command line."""
    options = {}
    for name, key in (
        ("l2", "l2"),
        ("l2_fields", "l2_fields"),
        ("steps", "n_steps"),
        ("ftol", "ftol"),
        ("couplings", "couplings"),
    ):
        if getattr(args, name) is not None:
            options[key] = getattr(args, name)
    if args.resume:  # opt-in: checkpoints cost a write of the optimiser state per evaluation
        options.update(checkpoint_path=args.out / "checkpoint.ckpt", resume=True)
    if args.method == "attention":
        options.update({k: v for k, v in (("n_heads", args.heads), ("head_dim", args.head_dim)) if v is not None})
    elif args.heads is not None or args.head_dim is not None:
        raise UserError("--heads and --head-dim apply to --method attention")
    if args.method != "plm" and args.couplings is not None:
        raise UserError("--couplings applies to --method plm")
    return options


def _report(args, path: Path, res) -> dict:
    """contacts.json's content before the precision and generation check."""
    import jax

    aln = res.alignment
    return {
        "alignment": str(path),
        "method": args.method,
        "L": res.scores.shape[0],
        "M": int(aln.M),
        "m_eff": res.m_eff,
        "n_sequences_file": int(aln.n_sequences),
        "steps": int(res.history.step[-1]) if len(res.history.step) else 0,
        "converged": bool(res.history.converged),
        "objective": float(res.history.objective[-1]) if len(res.history.objective) else None,
        "seconds": res.seconds,
        "options": res.options,
        "devices": [str(d) for d in jax.devices()],
    }


def _write_scores(out: Path, res, pairs, D) -> None:
    """scores.csv (ranked pairs numbered as `contacts.site_numbers`, with distances when known),
    scores.npz, scores.ec (plmc's format) and scores.mat (CCMpred's)."""
    import numpy as np

    from .. import contacts

    S = res.scores
    number, _ = contacts.site_numbers(res.alignment)
    with atomic_open(out / "scores.csv") as fh:
        fh.write("i,j,score" + (",distance,contact" if D is not None else "") + "\n")
        for i, j in pairs:
            extra = (
                f",{D[i, j]:.3f},{int(D[i, j] < 8.0)}"
                if D is not None and np.isfinite(D[i, j])
                else (",," if D is not None else "")
            )
            fh.write(f"{number[i]},{number[j]},{S[i, j]:.6g}{extra}\n")
    atomic_write(
        out / "scores.npz",
        lambda fh: np.savez_compressed(fh, scores=S, columns=res.alignment.columns, residues=number),
    )
    contacts.write_ec(out / "scores.ec", res)
    contacts.write_ccmpred(out / "scores.mat", res)


def _write_outputs(args, out: Path, path: Path, res, pairs, D, report: dict, k_gen) -> None:
    """The scores, the contact map, the generation check (into `report`), the model and contacts.json."""
    import numpy as np

    from .. import contacts, plotting
    from ..serialization import save_model
    from ..statistics import generation_check

    aln, S = res.alignment, res.scores
    L = S.shape[0]
    _write_scores(out, res, pairs, D)
    if D is not None:
        fig = contacts.plot_contact_map(
            S,
            contacts.contact_map(D),
            L,
            args.min_sep,
            known=np.isfinite(D),
            title=f"{path.name}: top L = {L} pairs, {args.method}",
        )
        plotting.save_figure(fig, out / "contact_map.png")
    if args.generation_check:
        report["generation"] = generation_check(
            res.potts, aln.seqs, res.weights, key=k_gen, n_chains=args.chains, progress=show_progress(args)
        )
    if args.save_model:
        save_model(out / "model.eqx", res.model, method=args.method, L=L, q=int(aln.alphabet.q))
    write_json(out / "contacts.json", report)


def _summary_lines(args, out: Path, path: Path, res, pairs, D, report: dict) -> list[str]:
    """What the command prints: the fit, the top 10 pairs, the precision, the generation check."""
    from .. import contacts

    aln, S = res.alignment, res.scores
    L = S.shape[0]
    number, _ = contacts.site_numbers(aln)
    top = [
        {
            "rank": r + 1,
            "i": int(number[i]),
            "j": int(number[j]),
            "score": float(S[i, j]),
            **({"distance": float(D[i, j])} if D is not None else {}),
        }
        for r, (i, j) in enumerate(pairs[:10])
    ]
    lines = [
        f"{path.name}: L = {L}, M = {aln.M}, M_eff = {res.m_eff:.1f}; {args.method} fit in "
        f"{res.seconds['fit']:.1f} s ({report['steps']} iterations), whole pipeline {res.seconds['total']:.1f} s",
        "",
        markdown_table(top, list(top[0]) if top else ["rank"]),
    ]
    if D is not None:
        lines += [
            "",
            f"precision (contact: distance < 8 A, |i - j| >= {args.min_sep}): "
            + ", ".join(f"PPV@{k} = {v:.3f}" for k, v in report["precision"].items()),
        ]
    if args.generation_check:
        g = report["generation"]
        lines += [
            "",
            f"generation check: Pearson r of f_i {g['site']['pearson']:.3f}, of C_ij {g['connected']['pearson']:.3f} "
            f"(slope {g['connected']['slope']:.2f}); sampler tau {g['sampler']['tau']:.2f}, R-hat {g['sampler']['rhat']:.3f}",
        ]
    lines += [
        "",
        f"wrote {out}/contacts.json, scores.csv, scores.npz, scores.ec, scores.mat"
        + (", contact_map.png/pdf" if D is not None else "")
        + (", model.eqx" if args.save_model else ""),
    ]
    return lines


def add_parser(sub) -> None:
    p = sub.add_parser(
        "contacts",
        help="predict residue contacts from a protein alignment (plmDCA or factored attention)",
        description="Read an alignment, weight its sequences, fit plmDCA or a factored-attention layer by "
        "pseudo-likelihood, and rank residue pairs by APC-corrected Frobenius scores "
        "(jaxpotts.contacts.pipeline). With --distances, also precision at L/5, L/2, L and a "
        "contact-map figure. Writes contacts.json, scores.csv (ranked pairs, 1-based match "
        "columns, or focus residue numbers with --focus), scores.npz, scores.ec (plmc's "
        "'i A_i j A_j 0 score' table, ranked), scores.mat (CCMpred's L x L matrix) and "
        "contact_map.png/pdf.",
    )
    p.add_argument("alignment", type=Path, help="FASTA, A2M/A3M or Stockholm alignment (gzip ok)")
    p.add_argument("--method", choices=("plm", "attention"), default="plm", help="default: plm")
    p.add_argument(
        "--distances",
        type=Path,
        default=None,
        help="residue distance file (rows 'i j ... distance', 1-based match columns) for precision",
    )
    p.add_argument("--min-sep", type=positive_int, default=5, help="minimal |i - j| of ranked pairs (default: 5)")
    g = p.add_argument_group("data")
    g.add_argument(
        "--focus",
        nargs="?",
        const="",
        default=None,
        metavar="NAME",
        help="keep the columns of a focus sequence (default: the first; or a name, as plmc -f) and number "
        "the outputs by its residues (NAME/start-end)",
    )
    g.add_argument("--alphabet", default="protein", help="protein (default), rna, binary or a string of symbols")
    add_unknown_option(g)
    g.add_argument("--theta", type=positive_float, default=0.8, help="identity threshold of the weights (default: 0.8)")
    g.add_argument("--max-gap-fraction", type=fraction, default=None, help="drop sequences with more gaps")
    g = p.add_argument_group("fit (defaults: jaxpotts.defaults.PLM / ATTENTION_CONTACTS)")
    g.add_argument(
        "--l2",
        type=non_negative_float,
        default=None,
        help="lambda_J (plmDCA convention; default plm max(0.01, 0.01 (q-1)(L-1)/M_eff), attention 0.001)",
    )
    g.add_argument("--l2-fields", type=non_negative_float, default=None, help="lambda_h (default 0.01)")
    g.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="most optimiser steps: L-BFGS iterations for plm (default 300), Adam minibatch steps for attention (default: 200 epochs)",
    )
    g.add_argument(
        "--ftol",
        type=non_negative_float,
        default=None,
        help="plm: stop when the objective fell by less than this fraction over 5 iterations (default 0.003)",
    )
    g.add_argument(
        "--couplings",
        choices=("asymmetric", "symmetric"),
        default=None,
        help="plm: L independent conditionals symmetrised afterwards (default) or one coupling per pair "
        "inside the objective (symmetric pseudo-likelihood, as plmc and CCMpred)",
    )
    g.add_argument("--heads", type=positive_int, default=None, help="attention heads (default 32)")
    g.add_argument("--head-dim", type=positive_int, default=None, help="attention head dimension (default 23)")
    g = p.add_argument_group("outputs")
    g.add_argument(
        "--generation-check",
        action="store_true",
        help="sample the fitted model and compare one- and two-site statistics with the data",
    )
    g.add_argument("--chains", type=positive_int, default=1000, help="chains of the generation check (default 1000)")
    g.add_argument("--save-model", action="store_true", help="also write the fitted model (model.eqx + JSON)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="checkpoint the fit to OUT/checkpoint.ckpt and continue "
        "from it if it exists (same alignment, seed and options)",
    )
    add_memory_option(p)
    add_common(p, "jaxpotts_contacts")
    p.set_defaults(func=run)

"""`jaxpotts fit bm DATA`: Boltzmann-machine learning (`jaxpotts.boltzmann`), the bm branch of `fit`."""

from __future__ import annotations

import time
from pathlib import Path

from .. import defaults
from .._report import markdown_table, write_json
from ._common import UserError, positive_float, positive_int, say, show_progress

# CLI option -> entry of defaults.BOLTZMANN.
_OPTIONS = {
    "optimizer": "optimizer",
    "lr": "learning_rate",
    "steps": "n_steps",
    "l2": "l2",
    "l2_fields": "l2_fields",
    "chains": "n_chains",
    "sweeps": "sweeps",
    "target": "target",
}


def add_options(p) -> None:
    """The options only `fit bm` reads."""
    bm = defaults.BOLTZMANN.model
    g = p.add_argument_group("Boltzmann learning (fit bm)")
    g.add_argument("--chains", type=positive_int, default=None, help=f"persistent chains (default: {bm['n_chains']})")
    g.add_argument(
        "--sweeps", type=positive_int, default=None, help=f"Gibbs sweeps per update (default: {bm['sweeps']})"
    )
    g.add_argument(
        "--target",
        type=positive_float,
        default=None,
        help=f"stop at this Pearson of connected correlations with equilibrated chains (default: {bm['target']})",
    )
    g.add_argument("--max-seconds", type=positive_float, default=None, help="stop after this wall time (default: none)")


def run(args, seqs, weights, q: int, data_info: dict) -> dict:
    """Fit, then write model.eqx (+ .json), history.json and fit.json to OUT."""
    import jax
    import numpy as np

    from ..boltzmann import fit_boltzmann
    from ..serialization import save_model

    if args.epochs is not None or args.batch_size is not None or args.loss is not None or args.val_fraction:
        raise UserError("fit bm takes --steps, not --epochs/--batch-size/--loss/--val-fraction")
    if args.optimizer == "lbfgs":
        raise UserError("fit bm needs a stochastic-gradient optimizer: --optimizer adam or sgd")
    given = {name: getattr(args, opt) for opt, name in _OPTIONS.items() if getattr(args, opt, None) is not None}
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    M, L = seqs.shape
    say(args, f"fit bm: {M} sequences of length L={L}, q={q} ({data_info['format']}, weights {data_info['weights']})")
    t0 = time.perf_counter()
    res = fit_boltzmann(
        seqs,
        q=q,
        key=jax.random.PRNGKey(args.seed),
        weights=None if weights is None else np.asarray(weights, np.float32),
        progress=show_progress(args),
        checkpoint_path=out / "checkpoint.ckpt",
        resume=args.resume,
        max_seconds=args.max_seconds,
        **given,
    )
    seconds = time.perf_counter() - t0
    save_model(out / "model.eqx", res.model, kind="bm", data=str(args.data), seed=args.seed, L=L, q=q, **res.settings)
    write_json(out / "history.json", res.history)
    summary = dict(kind="bm", M=M, L=L, q=q, data=str(args.data), **data_info, **res.summary(), wall_seconds=seconds)
    write_json(out / "fit.json", summary)
    ev = res.equilibration
    say(
        args,
        markdown_table([summary], ["kind", "M", "L", "q", "steps", "pearson", "site_pearson", "reached", "seconds"]),
        f"equilibration: split R-hat {ev['rhat']:.3f}, tau {ev['tau']:.1f} sweeps, energy of the chains "
        f"{ev['energy_chains']:.2f} vs fresh chains from the data {ev['energy_fresh']:.2f} "
        f"(se {ev['energy_diff_se']:.2f}): {'equilibrated' if ev['equilibrated'] else 'NOT equilibrated'}",
        f"wrote model.eqx (+ .json), history.json, fit.json, checkpoint.ckpt to {out}",
    )
    return summary

"""`jaxpotts demo`: the end-to-end story (jaxpotts.demo)."""

from __future__ import annotations

from ._common import (
    add_common,
    show_progress,
)


def run(args) -> dict:
    from ..demo import run

    return run(
        args.out,
        quick=args.quick,
        seed=args.seed,
        progress=show_progress(args),
        echo=(lambda s: None) if args.quiet else (lambda s: print(s, flush=True)),
    )


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="end-to-end example: sample a generalized Potts model, learn it with attention, compare with theory",
        description="Build a generalized Potts model, sample it (Gibbs and Metropolis, with diagnostics), train "
        "factored attention by masked-language modelling, check L*MLM = pseudo-likelihood numerically, "
        "compare learned and true couplings up to scale and gauge, and overlay simulations on a replica "
        "learning curve. Writes report.md, demo.json and figures (PNG + PDF) to --out.",
    )
    p.add_argument("--quick", action="store_true", help="smaller run (well under a minute on a laptop CPU), as in CI")
    add_common(p, "jaxpotts_demo")
    p.set_defaults(func=run)

"""The `jaxpotts` command line.

    jaxpotts demo [--quick]                       the end-to-end story (jaxpotts.demo)
    jaxpotts sample [--model-file MODEL]          MCMC samples of a random or a saved model
    jaxpotts fit {plm,attention,transformer} DATA fit a model to sampled sequences or an alignment
    jaxpotts contacts ALIGNMENT                   residue contacts of a protein family (plmDCA / attention)
    jaxpotts validate ALIGNMENT MODEL             how well a saved model generates its family
    jaxpotts replica                              a replica learning curve (+ simulation points)
    jaxpotts info                                 versions, devices, precision

Every subcommand takes `--seed`, `--quiet`, `--out DIR` and `--debug`, and writes what it
prints as machine-readable files (JSON, CSV, NPZ) and figures (PNG + PDF) to `--out`. Progress
bars appear when stderr is a terminal, never with `--quiet`. A user mistake (bad argument,
missing or malformed file, inconsistent sizes) prints one line `jaxpotts: error: ...` and exits
with status 2; an unexpected failure prints one line `jaxpotts: internal error: ...` and exits
with status 1. `--debug` shows the traceback instead.

To add a subcommand, write a module here with `add_parser(sub)` (its options, and
`set_defaults(func=run)`) and `run(args)` (parse, call the library, print, write), and list it
in `SUBCOMMANDS`. Library logic does not live here.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import contacts, demo, fit, info, mutations, replica, sample, validate
from ._common import Parser, UserError

__all__ = ["main", "console", "build_parser", "UserError", "SUBCOMMANDS"]


SUBCOMMANDS = (demo, sample, fit, contacts, mutations, replica, validate, info)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="jaxpotts",
        description="Generalized Potts models, factored self-attention and their replica theory, in JAX. "
        "Run 'jaxpotts COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _configure_jax() -> None:
    """Before JAX runs anything: one CPU device per core and the persistent compilation cache
    (`jaxpotts.runtime.configure`, which `import jaxpotts` already called unless
    ``JAXPOTTS_CONFIGURE_JAX=0``; the command line sets JAX up in any case). Nothing about
    devices changes when JAX already runs (main() called from a program)."""
    from ..runtime import configure

    configure()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable = args.func
    try:
        _configure_jax()
        with warnings.catch_warnings():  # warnings (e.g. counted unknown letters) as one line each, no source
            warnings.showwarning = lambda message, *_, **__: print(f"jaxpotts: warning: {message}", file=sys.stderr)
            func(args)
    except KeyboardInterrupt:
        ckpt = Path(getattr(args, "out", ".")) / "checkpoint.ckpt"
        fits = func in (fit.run, contacts.run)
        where = f"; the last checkpoint is {ckpt} (continue with --resume)" if fits and ckpt.exists() else ""
        print(f"jaxpotts: interrupted{where}", file=sys.stderr)
        return 130
    except (UserError, ValueError, OSError) as err:  # OSError: missing/unwritable paths, a file where a folder goes
        if args.debug:
            raise
        print(f"jaxpotts: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # an unexpected failure: still one line, the traceback under --debug
        if args.debug:
            raise
        print(
            f"jaxpotts: internal error: {type(err).__name__}: {_one_line(err)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


def console() -> int:
    """The `jaxpotts` command: `main` in a process of its own.

    Everything the imports made lives until the process ends, so it is taken out of the cyclic
    garbage collector's passes (`gc.freeze`), and so is what the run made once it is done. On
    PF00014's contact run those passes cost ~0.06 s during the run and ~0.17 s at the
    interpreter's exit. A program that calls `main` keeps its collector as it is; it can do the
    same after its imports (docs/contacts.md)."""
    import gc

    gc.freeze()
    status = main()
    gc.freeze()  # and what the run made, which the exit would otherwise traverse
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())

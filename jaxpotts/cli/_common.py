"""What every subcommand shares: one-line user errors, the common options, output helpers,
argument types, and loading a saved model for sampling or scoring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = [
    "UserError",
    "Parser",
    "add_common",
    "add_memory_option",
    "say",
    "show_progress",
    "positive_int",
    "non_negative_int",
    "non_negative_float",
    "positive_float",
    "fraction",
    "load_saved_model",
]


class UserError(Exception):
    """A mistake in the command's arguments or inputs: reported in one line."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`jaxpotts: error: ...`, exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"jaxpotts: error: {self.prog}: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    g = parser.add_argument_group("common options")
    g.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    g.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default: {default_out})")
    g.add_argument("--quiet", action="store_true", help="no progress bars or tables, only errors")
    g.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def say(args, *lines: str) -> None:
    if not args.quiet:
        print(*lines, sep="\n", flush=True)


def show_progress(args) -> bool | None:
    """Progress bars: never with --quiet, else when stderr is a terminal."""
    return False if args.quiet else None


def _integer(text: str, minimum: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a {kind} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be a {kind} integer, got {text}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "positive")


def non_negative_int(text: str) -> int:
    return _integer(text, 0, "non-negative")


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def memory_size(text: str) -> float:
    from ..memory import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_memory_option(parser) -> None:
    parser.add_argument(
        "--max-memory",
        type=memory_size,
        default=None,
        metavar="SIZE",
        help="memory budget of the up-front check, e.g. 64G or 500M, or 'unlimited' to skip it "
        "(default: the available memory; see docs/inputs.md)",
    )


def add_unknown_option(group) -> None:
    """``--unknown {gap,drop,error}``: `jaxpotts.msa.read_alignment`'s ``unknown`` (letters outside the alphabet)."""
    group.add_argument(
        "--unknown",
        choices=("gap", "drop", "error"),
        default="gap",
        help="letters outside the alphabet (X, B, Z, J for proteins): read as gaps (default), drop their "
        "sequences (plmc's validity filter; never the focus), or refuse the file",
    )


def fraction(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def load_saved_model(path: Path):
    """A saved model as a joint Potts model for sampling (symmetrised if it is L conditionals)."""
    from ..attention import FactoredAttention
    from ..potts import FactoredPotts, PottsModel, joint_model
    from ..serialization import load_model

    if not path.exists():
        raise UserError(f"model file {path} does not exist")
    if not Path(str(path) + ".json").exists():
        raise UserError(f"{path}.json is missing: load_model needs the JSON written next to the model by save_model")
    try:
        model, hyper = load_model(path)
    except ValueError as err:
        raise UserError(f"cannot load {path}: {err}") from None
    if not (isinstance(model, (PottsModel, FactoredPotts)) or hasattr(model, "to_potts")):
        raise UserError(
            f"{path} holds a {type(model).__name__}, which has no Potts energy to sample "
            "(sample PottsModel, FactoredPotts or FactoredAttention models)"
        )
    joint = joint_model(model)
    note = ""
    if isinstance(model, FactoredAttention):
        note = "attention layer -> joint Potts model (J_ij(a,b) + J_ji(b,a)) / 2"
    elif joint is not model:
        note = "non-symmetric couplings (L conditionals) -> joint model (J_ij(a,b) + J_ji(b,a)) / 2"
    return joint, note

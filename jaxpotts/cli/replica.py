"""`jaxpotts replica`: a replica learning curve with optional finite-N simulations."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .._report import markdown_table, write_json
from ._common import (
    UserError,
    add_common,
    positive_float,
    positive_int,
    say,
    show_progress,
)


def parse_grid(values: Sequence[str], name: str) -> list[float]:
    """Numbers, or START:STOP:NUM for NUM log-spaced points from START to STOP."""
    import numpy as np

    out: list[float] = []
    for text in values:
        if ":" in text:
            parts = text.split(":")
            try:
                start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
                if len(parts) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                raise UserError(f"{name}: {text!r} is neither a number nor START:STOP:NUM") from None
            if not (0 < start < stop) or num < 2:
                raise UserError(f"{name}: {text!r} needs 0 < START < STOP and NUM >= 2")
            out.extend(np.geomspace(start, stop, num).tolist())
        else:
            try:
                out.append(float(text))
            except ValueError:
                raise UserError(f"{name}: {text!r} is not a number") from None
    if any(not (v > 0) or v == float("inf") for v in out):
        raise UserError(f"{name} must be finite and > 0, got {values}")
    return sorted(set(out))


def colour_matrix(text: str, q: int):
    """U from 'identity'/'potts', a .npy/.txt/.csv/.json file or a JSON string."""
    import numpy as np

    if text.lower() in ("identity", "potts", "i"):
        return np.eye(q), "identity"
    path = Path(text)
    try:
        if path.suffix == ".npy" and path.exists():
            U = np.load(path)
        elif path.suffix == ".json" and path.exists():
            U = np.asarray(json.loads(path.read_text()), np.float64)
        elif path.suffix in (".txt", ".csv", ".tsv", ".dat") and path.exists():
            U = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
        elif text.lstrip().startswith("["):
            U = np.asarray(json.loads(text), np.float64)
        else:
            raise UserError(f"--U {text!r}: not 'identity', an existing .npy/.json/.txt/.csv file, or a JSON matrix")
    except (ValueError, json.JSONDecodeError) as err:
        raise UserError(f"--U {text!r}: cannot read a matrix ({err})") from None
    U = np.asarray(U, np.float64)
    if U.shape != (q, q):
        raise UserError(f"--U must be a {q} x {q} matrix for --q {q}, got shape {U.shape}")
    return U, text


def run(args) -> dict:
    from .. import plotting, replica
    from .._report import jsonable

    alphas = parse_grid(args.alphas, "--alphas")
    lams = parse_grid(args.lambdas, "--lambdas")
    sim_alphas = parse_grid(args.simulate, "--simulate") if args.simulate else []
    U, U_label = colour_matrix(args.U, args.q)
    grid = sorted(set(alphas) | set(sim_alphas))
    kinds = list(dict.fromkeys(args.kind))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    scenarios = {kind: replica.Scenario(args.q, U, args.rho, kind) for kind in kinds}
    panels = {kind: f"q={args.q}, U={U_label}, rho={args.rho:g}, {kind}" for kind in kinds}
    full, curves = _theory(args, out, scenarios, panels, grid, lams, U)
    n_bad = int((~full["converged"]).sum())
    points = _simulations(args, out, scenarios, panels, curves, lams, sim_alphas) if sim_alphas else []
    fig = plotting.plot_replica_curves(
        curves,
        points,
        observable=args.observable,
        title=f"replica learning curve ({args.observable.replace('_', ' ')})",
    )
    plotting.save_figure(fig, out / "replica.png")
    n_rows = _print_tables(args, full, points, n_bad)
    say(args, f"wrote curve.csv, curve.json{', simulations.csv/.json' if points else ''}, replica.png/.pdf to {out}")
    return jsonable({"n_points": n_rows, "not_converged": n_bad, "simulations": len(points)})


def _theory(args, out: Path, scenarios: dict, panels: dict, grid: list, lams: list, U) -> tuple[dict, dict]:
    """(the table of all kinds, {panel: table}): the learning curves in float64, written to
    curve.csv and curve.json."""
    import numpy as np

    from .. import replica
    from .._validation import enable_x64

    progress = show_progress(args)
    tables, curves = [], {}
    with enable_x64():  # the theory in float64
        for kind, sc in scenarios.items():
            table = replica.learning_curve(sc, grid, lams, progress=progress)
            table = {"kind": np.array([kind] * len(table["alpha"])), **table}
            curves[panels[kind]] = table
            tables.append(table)
    full = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    replica.write_table_csv(out / "curve.csv", full)
    replica.write_table_json(
        out / "curve.json",
        full,
        q=args.q,
        U=U.tolist(),
        rho=args.rho,
        kinds=list(scenarios),
        lambdas=lams,
        alphas=grid,
        result_messages={str(k): v for k, v in replica.result_messages().items()},
    )
    return full, curves


def _simulations(args, out: Path, scenarios: dict, panels: dict, curves: dict, lams: list, sim_alphas: list) -> list:
    """Finite-N simulations at every (kind, lambda, alpha), each row with its theory values;
    written to simulations.csv and simulations.json."""
    import jax
    import numpy as np

    from .. import replica
    from .._progress import progress_bar

    points = []
    key = jax.random.PRNGKey(args.seed)
    todo = [(kind, lam, a) for kind in scenarios for lam in lams for a in sim_alphas]
    with progress_bar(len(todo), "replica simulations", show_progress(args), unit="point") as bar:
        for i, (kind, lam, alpha) in enumerate(todo):
            res = replica.simulate(
                scenarios[kind],
                alpha,
                lam,
                N=args.N,
                key=jax.random.fold_in(key, i),
                n_seeds=args.seeds,
                n_test=args.n_test,
            )
            t = curves[panels[kind]]
            j = int(np.flatnonzero((t["lam"] == lam) & np.isclose(t["alpha"], alpha))[0])
            row = dict(panel=panels[kind], kind=kind, lam=lam, alpha=alpha, N=args.N, M=res.M, seeds=args.seeds)
            for name in replica.OBSERVABLES:
                row[name], row[name + "_se"] = float(res.mean[name]), float(res.stderr[name])
                if name in t:
                    row[name + "_theory"] = float(t[name][j])
            points.append(row)
            bar.update(1)
    replica.write_table_csv(out / "simulations.csv", {k: np.array([r[k] for r in points]) for k in points[0]})
    write_json(out / "simulations.json", points)
    return points


def _print_tables(args, full: dict, points: list, n_bad: int) -> int:
    """Print the curve and the simulations against theory, warn about unconverged points;
    return the number of curve points."""
    rows = [
        {
            k: full[k][i]
            for k in ("kind", "lam", "alpha", "m", "Q", "test_loss", "excess_loss", "coupling_error", "converged")
        }
        for i in range(len(full["alpha"]))
    ]
    say(args, markdown_table(rows, list(rows[0])))
    if points:
        say(
            args,
            "",
            "simulations (mean +- stderr over seeds) against theory:",
            markdown_table(
                points, ["kind", "lam", "alpha", "N", "excess_loss", "excess_loss_se", "excess_loss_theory"]
            ),
        )
    if n_bad:
        print(
            f"jaxpotts: warning: {n_bad} of {len(rows)} points did not converge (see the 'result' column of curve.csv)",
            file=sys.stderr,
        )
    return len(rows)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "replica",
        help="replica learning curve of one learned conditional (+ finite-N simulations)",
        description="Solve the replica-symmetric saddle point (docs/replica.md) on a grid of alpha = M/N for "
        "each ridge lambda, with continuation along alpha, in float64. Optionally overlay simulations "
        "of the same estimator at finite N (--simulate). Writes curve.csv, curve.json, "
        "simulations.csv/.json and replica.png/.pdf.",
    )
    p.add_argument("--q", type=positive_int, default=3, help="number of colours (default: 3)")
    p.add_argument(
        "--U",
        default="identity",
        help="colour matrix: 'identity' (Potts), a .npy/.json/.txt/.csv file, or a JSON string such as "
        "'[[1,0],[0,1]]'; symmetric with constant row sums (default: identity)",
    )
    p.add_argument("--rho", type=positive_float, default=9.0, help="teacher strength |J*|^2 (default: 9)")
    p.add_argument(
        "--kind",
        nargs="+",
        choices=("star", "independent"),
        default=["star"],
        help="scenario(s): star-graph Potts model or independent inputs (default: star)",
    )
    p.add_argument(
        "--alphas",
        nargs="+",
        default=["0.2:20:25"],
        metavar="A",
        help="sample ratios M/N: numbers, or START:STOP:NUM log-spaced (default: 0.2:20:25)",
    )
    p.add_argument("--lambdas", nargs="+", default=["1.0"], metavar="LAM", help="ridge strengths (default: 1)")
    p.add_argument(
        "--observable",
        default="excess_loss",
        choices=("excess_loss", "test_loss", "train_loss", "coupling_error", "m", "Q"),
        help="what the figure shows (default: excess_loss)",
    )
    g = p.add_argument_group("simulations")
    g.add_argument(
        "--simulate", nargs="+", default=None, metavar="A", help="alphas at which to simulate (none by default)"
    )
    g.add_argument("--N", type=positive_int, default=200, help="input sites of a simulation (default: 200)")
    g.add_argument("--seeds", type=positive_int, default=3, help="teachers / data sets per point (default: 3)")
    g.add_argument("--n-test", type=positive_int, default=10_000, help="test samples per seed (default: 10000)")
    add_common(p, "jaxpotts_replica")
    p.set_defaults(func=run)

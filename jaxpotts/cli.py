"""The `jaxpotts` command line.

Every subcommand takes `--seed`, `--quiet`, `--out DIR` and `--debug`. User mistakes print one
line `jaxpotts: error: ...` and exit with status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence


class UserError(Exception):
    """A mistake in the command's arguments or inputs: reported in one line."""


# ----------------------------------------------------------------------------- helpers


def _common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default: {default_out})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables, only errors")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _say(args, *lines: str) -> None:
    if not args.quiet:
        print(*lines, sep="\n", flush=True)


def _write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def _table(rows: list[dict], columns: Sequence[str], floats: str = "{:.4g}") -> str:
    def fmt(v):
        return floats.format(v) if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join([line, rule, *body])


# ----------------------------------------------------------------------------- demo


def _demo(args) -> dict:
    import jax
    import numpy as np

    from . import plotting
    from .potts import random_factored_potts
    from .sampling import sample

    out: Path = args.out
    quick = args.quick
    L, q = 20, 4
    n_chains, n_samples, n_burnin = (64, 200, 100) if quick else (256, 1000, 500)
    key = jax.random.PRNGKey(args.seed)
    k_model, k_gibbs, k_metro = jax.random.split(key, 3)
    model = random_factored_potts(k_model, L, q, graph="erdos_renyi", colours="random", mean_degree=3.0,
                                  coupling_scale=0.6, field_scale=0.3)
    _say(args, f"jaxpotts demo: generalized Potts model J_ij U(a,b), L={L}, q={q}, sparse J (mean degree 3), "
               f"random symmetric U; {n_chains} chains x {n_samples} samples after {n_burnin} burn-in sweeps")

    results, rows = {}, []
    for method, k in (("gibbs", k_gibbs), ("metropolis", k_metro)):
        t0 = time.perf_counter()
        res = sample(model, k, n_chains=n_chains, n_samples=n_samples, n_burnin=n_burnin, method=method,
                     progress=not args.quiet)
        res.sequences.block_until_ready()
        seconds = time.perf_counter() - t0
        summary = res.summary()
        e = np.asarray(res.energies, np.float64)
        summary["energy_stderr"] = float(e.std() / np.sqrt(max(summary["ess"], 1.0)))
        summary["seconds"] = seconds
        results[method] = (res, summary)
        rows.append({"method": method, **summary})
        fig = plotting.plot_energy_diagnostics(res.energies, title=f"{method} sampling, L={L}, q={q}")
        plotting.save_figure(fig, out / f"energy_{method}.png")

    _say(args, "", _table(rows, ["method", "energy_mean", "energy_stderr", "acceptance_rate", "tau", "ess", "rhat",
                                 "seconds"]))

    # Two different kernels target the same distribution: their estimates must agree.
    (rg, sg), (rm, sm) = results["gibbs"], results["metropolis"]
    z_energy = abs(sg["energy_mean"] - sm["energy_mean"]) / np.hypot(sg["energy_stderr"], sm["energy_stderr"])
    marg = [np.eye(q)[np.asarray(r.sequences).reshape(-1, L)].mean(0) for r in (rg, rm)]
    max_marginal_diff = float(np.max(np.abs(marg[0] - marg[1])))
    _say(args, "", f"Gibbs vs Metropolis: energy difference {z_energy:.2f} standard errors, "
                   f"largest one-site marginal difference {max_marginal_diff:.3f}")
    report = {
        "model": {"L": L, "q": q, "graph": "erdos_renyi", "colours": "random"},
        "sampling": {m: s for m, (_, s) in results.items()},
        "gibbs_vs_metropolis": {"energy_z": float(z_energy), "max_marginal_diff": max_marginal_diff},
    }
    _write_json(out / "demo.json", report)
    _say(args, "", f"wrote {out}/demo.json and energy_{{gibbs,metropolis}}.{{png,pdf}}")
    return report


# ----------------------------------------------------------------------------- sample


def _sample(args) -> dict:
    import jax
    import numpy as np

    from .potts import random_dense_potts, random_factored_potts
    from .sampling import sample

    key = jax.random.PRNGKey(args.seed)
    k_model, k_run = jax.random.split(key)
    if args.model == "factored":
        model = random_factored_potts(k_model, args.L, args.q, graph=args.graph, colours=args.colours,
                                      coupling_scale=args.coupling_scale)
    else:
        model = random_dense_potts(k_model, args.L, args.q, coupling_scale=args.coupling_scale)
    res = sample(model, k_run, n_chains=args.chains, n_samples=args.samples, n_burnin=args.burnin, thin=args.thin,
                 method=args.method, beta=args.beta, schedule=args.schedule, progress=not args.quiet)
    summary = res.summary()
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "samples.npz", sequences=np.asarray(res.sequences),
                        energies=np.asarray(res.energies))
    _write_json(args.out / "sample.json", summary)
    _say(args, _table([summary], ["method", "n_chains", "n_samples", "energy_mean", "acceptance_rate", "tau", "ess",
                                  "rhat"]), f"wrote {args.out}/samples.npz and sample.json")
    return summary


# ----------------------------------------------------------------------------- info


def _info(args) -> dict:
    import platform

    import equinox
    import jax
    import numpy
    import optax

    from . import __version__

    info = {
        "jaxpotts": __version__,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "numpy": numpy.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
    }
    if not args.quiet:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k.ljust(width)}  {v}")
    return info


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxpotts",
        description="Generalized Potts models, factored self-attention and their replica theory, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="end-to-end example on a built-in generalized Potts model",
                       description="Build a generalized Potts model, sample it with Gibbs and Metropolis, "
                                   "print diagnostics, save figures and a JSON report.")
    p.add_argument("--quick", action="store_true", help="smaller run (seconds), as used in CI")
    _common(p, "jaxpotts_demo")
    p.set_defaults(func=_demo)

    p = sub.add_parser("sample", help="sample a random dense or factored Potts model",
                       description="Sample a random Potts model and write samples.npz and sample.json.")
    p.add_argument("--model", choices=("factored", "dense"), default="factored")
    p.add_argument("--L", type=_positive_int, default=20, help="number of sites (default: 20)")
    p.add_argument("--q", type=_positive_int, default=4, help="number of colours (default: 4)")
    p.add_argument("--graph", choices=("gaussian", "erdos_renyi"), default="gaussian")
    p.add_argument("--colours", choices=("random", "potts"), default="random")
    p.add_argument("--coupling-scale", type=float, default=0.5)
    p.add_argument("--method", choices=("gibbs", "metropolis"), default="gibbs")
    p.add_argument("--schedule", choices=("sequential", "random"), default="sequential")
    p.add_argument("--beta", type=float, default=1.0, help="inverse temperature (default: 1)")
    p.add_argument("--chains", type=_positive_int, default=100)
    p.add_argument("--samples", type=_positive_int, default=500)
    p.add_argument("--burnin", type=_non_negative_int, default=200)
    p.add_argument("--thin", type=_positive_int, default=1)
    _common(p, "jaxpotts_sample")
    p.set_defaults(func=_sample)

    p = sub.add_parser("info", help="versions, devices and precision",
                       description="Print versions of jaxpotts and its dependencies, JAX devices and x64.")
    _common(p, ".")
    p.set_defaults(func=_info)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable = args.func
    try:
        func(args)
    except (UserError, ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        if args.debug:
            raise
        print(f"jaxpotts: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

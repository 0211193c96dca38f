"""`jaxpotts sample`: MCMC samples of a random Potts model or of a saved model."""

from __future__ import annotations

from pathlib import Path

from .._report import markdown_table, write_json
from ._common import (
    add_common,
    add_memory_option,
    load_saved_model,
    non_negative_float,
    non_negative_int,
    positive_int,
    say,
    show_progress,
)


def run(args) -> dict:
    import jax
    import numpy as np

    from .. import plotting
    from .._files import atomic_write
    from ..memory import sample_estimate
    from ..potts import random_dense_potts, random_factored_potts
    from ..sampling import sample
    from ..serialization import save_model

    key = jax.random.PRNGKey(args.seed)
    k_model, k_run = jax.random.split(key)
    note = ""
    if args.model_file is not None:
        model, note = load_saved_model(args.model_file)
        source = {"model_file": str(args.model_file)}
    elif args.model == "factored":
        model = random_factored_potts(
            k_model, args.L, args.q, graph=args.graph, colours=args.colours, coupling_scale=args.coupling_scale
        )
        source = {
            "random_model": "factored",
            "L": args.L,
            "q": args.q,
            "graph": args.graph,
            "colours": args.colours,
            "coupling_scale": args.coupling_scale,
        }
    else:
        model = random_dense_potts(k_model, args.L, args.q, coupling_scale=args.coupling_scale)
        source = {"random_model": "dense", "L": args.L, "q": args.q, "coupling_scale": args.coupling_scale}
    if note:
        say(args, f"note: {note}")
    say(
        args,
        f"sample: {args.chains} chains x {args.samples} samples, L={model.L}, q={model.q}; memory estimate "
        + str(sample_estimate(model.L, model.q, args.chains, args.samples, dense=not hasattr(model, "U"))),
    )
    res = sample(
        model,
        k_run,
        n_chains=args.chains,
        n_samples=args.samples,
        n_burnin=args.burnin,
        thin=args.thin,
        method=args.method,
        beta=args.beta,
        schedule=args.schedule,
        progress=show_progress(args),
        max_memory=args.max_memory,
    )
    summary = {**res.summary(), "q": model.q, "burnin": args.burnin, "thin": args.thin, "seed": args.seed, **source}
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(
        out / "samples.npz",
        lambda fh: np.savez_compressed(
            fh, sequences=np.asarray(res.sequences), energies=np.asarray(res.energies), q=np.int32(model.q)
        ),
    )
    written = ["samples.npz", "sample.json", "energy.png/.pdf"]
    if args.model_file is None:
        save_model(out / "model.eqx", model, **source)
        written.append("model.eqx (+ .json)")
    write_json(out / "sample.json", summary)
    fig = plotting.plot_energy_diagnostics(res.energies, title=f"{args.method} sampling, L={model.L}, q={model.q}")
    plotting.save_figure(fig, out / "energy.png")
    say(
        args,
        markdown_table(
            [summary],
            ["method", "n_chains", "n_samples", "L", "q", "energy_mean", "acceptance_rate", "tau", "ess", "rhat"],
        ),
        f"wrote {', '.join(written)} to {out}",
    )
    return summary


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="MCMC samples of a random Potts model or of a saved model",
        description="Sample a random dense or factored Potts model (saved as model.eqx) or a model "
        "saved by 'jaxpotts fit' (--model-file; attention layers and asymmetric plmDCA "
        "fits are symmetrised to a joint model). Writes samples.npz (sequences "
        "[chains, samples, L], energies, q), sample.json (diagnostics) and energy.png/.pdf.",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model-file",
        type=Path,
        default=None,
        metavar="MODEL",
        help="a model saved with jaxpotts.serialization.save_model (e.g. OUT/model.eqx of 'jaxpotts fit')",
    )
    g.add_argument(
        "--model",
        choices=("factored", "dense"),
        default="factored",
        help="kind of random model (default: factored J_ij U(a,b))",
    )
    g.add_argument("--L", type=positive_int, default=20, help="number of sites (default: 20)")
    g.add_argument("--q", type=positive_int, default=4, help="number of colours (default: 4)")
    g.add_argument(
        "--graph",
        choices=("gaussian", "erdos_renyi"),
        default="gaussian",
        help="site couplings J_ij: dense Gaussian or sparse Erdos-Renyi (default: gaussian)",
    )
    g.add_argument(
        "--colours",
        choices=("random", "potts"),
        default="random",
        help="colour matrix U: random symmetric or the identity (default: random)",
    )
    g.add_argument(
        "--coupling-scale", type=non_negative_float, default=0.5, help="scale of the couplings (default: 0.5)"
    )
    g = p.add_argument_group("sampler")
    g.add_argument("--method", choices=("gibbs", "metropolis"), default="gibbs", help="MCMC kernel (default: gibbs)")
    g.add_argument(
        "--schedule",
        choices=("sequential", "random"),
        default="sequential",
        help="site order within a sweep (default: sequential)",
    )
    g.add_argument("--beta", type=non_negative_float, default=1.0, help="inverse temperature (default: 1)")
    g.add_argument("--chains", type=positive_int, default=100, help="independent chains (default: 100)")
    g.add_argument("--samples", type=positive_int, default=500, help="recorded samples per chain (default: 500)")
    g.add_argument("--burnin", type=non_negative_int, default=200, help="burn-in sweeps (default: 200)")
    g.add_argument("--thin", type=positive_int, default=1, help="sweeps between recorded samples (default: 1)")
    add_memory_option(p)
    add_common(p, "jaxpotts_sample")
    p.set_defaults(func=run)

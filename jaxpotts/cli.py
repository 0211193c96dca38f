"""The `jaxpotts` command line.

    jaxpotts demo [--quick]                       the end-to-end story (jaxpotts.demo)
    jaxpotts sample [--model-file MODEL]          MCMC samples of a random or a saved model
    jaxpotts fit {plm,attention,transformer} DATA fit a model to sampled sequences or an alignment
    jaxpotts contacts ALIGNMENT                   residue contacts of a protein family (plmDCA / attention)
    jaxpotts replica                              a replica learning curve (+ simulation points)
    jaxpotts info                                 versions, devices, precision

Every subcommand takes `--seed`, `--quiet`, `--out DIR` and `--debug`, and writes what it
prints as machine-readable files (JSON, CSV, NPZ) and figures (PNG + PDF) to `--out`. Progress
bars appear when stderr is a terminal, never with `--quiet`. A user mistake (bad argument,
missing or malformed file, inconsistent sizes) prints one line `jaxpotts: error: ...` and exits
with status 2; an unexpected failure prints one line `jaxpotts: internal error: ...` and exits
with status 1. `--debug` shows the traceback instead.

To add a subcommand, write `_add_<name>(sub)` (parser + `set_defaults(func=...)`) and list it
in `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from ._report import markdown_table, write_json


class UserError(Exception):
    """A mistake in the command's arguments or inputs: reported in one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`jaxpotts: error: ...`, exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"jaxpotts: error: {self.prog}: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


# ----------------------------------------------------------------------------- helpers


def _common(parser: argparse.ArgumentParser, default_out: str) -> None:
    g = parser.add_argument_group("common options")
    g.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    g.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default: {default_out})")
    g.add_argument("--quiet", action="store_true", help="no progress bars or tables, only errors")
    g.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _say(args, *lines: str) -> None:
    if not args.quiet:
        print(*lines, sep="\n", flush=True)


def _progress(args) -> Optional[bool]:
    """Progress bars: never with --quiet, else when stderr is a terminal."""
    return False if args.quiet else None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


# ----------------------------------------------------------------------------- demo


def _demo(args) -> dict:
    from .demo import run

    return run(args.out, quick=args.quick, seed=args.seed, progress=_progress(args),
               echo=(lambda s: None) if args.quiet else (lambda s: print(s, flush=True)))


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="end-to-end example: sample a generalized Potts model, learn it with attention, compare with theory",
        description="Build a generalized Potts model, sample it (Gibbs and Metropolis, with diagnostics), train "
                    "factored attention by masked-language modelling, check L*MLM = pseudo-likelihood numerically, "
                    "compare learned and true couplings up to scale and gauge, and overlay simulations on a replica "
                    "learning curve. Writes report.md, demo.json and figures (PNG + PDF) to --out.")
    p.add_argument("--quick", action="store_true", help="smaller run (well under a minute on a laptop CPU), as in CI")
    _common(p, "jaxpotts_demo")
    p.set_defaults(func=_demo)


# ----------------------------------------------------------------------------- sample


def _load_saved_model(path: Path):
    """A saved model as a joint Potts model for sampling (symmetrised if it is L conditionals)."""
    from .attention import FactoredAttention
    from .potts import FactoredPotts, PottsModel, is_joint
    from .training import load_model

    if not path.exists():
        raise UserError(f"model file {path} does not exist")
    if not Path(str(path) + ".json").exists():
        raise UserError(f"{path}.json is missing: load_model needs the JSON written next to the model by save_model")
    try:
        model, hyper = load_model(path)
    except ValueError as err:
        raise UserError(f"cannot load {path}: {err}") from None
    note = ""
    if isinstance(model, FactoredAttention):
        model, note = model.to_potts(symmetrize=True), "attention layer -> joint Potts model (J_ij(a,b) + J_ji(b,a)) / 2"
    elif isinstance(model, (PottsModel, FactoredPotts)) and not is_joint(model):
        dense = model if isinstance(model, PottsModel) else model.to_dense()
        model = PottsModel(dense.fields, 0.5 * (dense.couplings + dense.couplings.transpose(1, 0, 3, 2)))
        note = "non-symmetric couplings (L conditionals) -> joint model (J_ij(a,b) + J_ji(b,a)) / 2"
    elif not isinstance(model, (PottsModel, FactoredPotts)):
        raise UserError(f"{path} holds a {type(model).__name__}, which has no Potts energy to sample "
                        "(sample PottsModel, FactoredPotts or FactoredAttention models)")
    return model, note


def _sample(args) -> dict:
    import jax
    import numpy as np

    from . import plotting
    from .potts import random_dense_potts, random_factored_potts
    from .sampling import sample
    from .training import save_model

    key = jax.random.PRNGKey(args.seed)
    k_model, k_run = jax.random.split(key)
    note = ""
    if args.model_file is not None:
        model, note = _load_saved_model(args.model_file)
        source = {"model_file": str(args.model_file)}
    elif args.model == "factored":
        model = random_factored_potts(k_model, args.L, args.q, graph=args.graph, colours=args.colours,
                                      coupling_scale=args.coupling_scale)
        source = {"random_model": "factored", "L": args.L, "q": args.q, "graph": args.graph, "colours": args.colours,
                  "coupling_scale": args.coupling_scale}
    else:
        model = random_dense_potts(k_model, args.L, args.q, coupling_scale=args.coupling_scale)
        source = {"random_model": "dense", "L": args.L, "q": args.q, "coupling_scale": args.coupling_scale}
    if note:
        _say(args, f"note: {note}")
    res = sample(model, k_run, n_chains=args.chains, n_samples=args.samples, n_burnin=args.burnin, thin=args.thin,
                 method=args.method, beta=args.beta, schedule=args.schedule, progress=_progress(args))
    summary = {**res.summary(), "q": model.q, "burnin": args.burnin, "thin": args.thin, "seed": args.seed, **source}
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "samples.npz", sequences=np.asarray(res.sequences), energies=np.asarray(res.energies),
                        q=np.int32(model.q))
    written = ["samples.npz", "sample.json", "energy.png/.pdf"]
    if args.model_file is None:
        save_model(out / "model.eqx", model, **source)
        written.append("model.eqx (+ .json)")
    write_json(out / "sample.json", summary)
    fig = plotting.plot_energy_diagnostics(res.energies, title=f"{args.method} sampling, L={model.L}, q={model.q}")
    plotting.save_figure(fig, out / "energy.png")
    _say(args, markdown_table([summary], ["method", "n_chains", "n_samples", "L", "q", "energy_mean", "acceptance_rate",
                                          "tau", "ess", "rhat"]), f"wrote {', '.join(written)} to {out}")
    return summary


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="MCMC samples of a random Potts model or of a saved model",
                       description="Sample a random dense or factored Potts model (saved as model.eqx) or a model "
                                   "saved by 'jaxpotts fit' (--model-file; attention layers and asymmetric plmDCA "
                                   "fits are symmetrised to a joint model). Writes samples.npz (sequences "
                                   "[chains, samples, L], energies, q), sample.json (diagnostics) and energy.png/.pdf.")
    g = p.add_argument_group("model")
    g.add_argument("--model-file", type=Path, default=None, metavar="MODEL",
                   help="a model saved with jaxpotts.training.save_model (e.g. OUT/model.eqx of 'jaxpotts fit')")
    g.add_argument("--model", choices=("factored", "dense"), default="factored",
                   help="kind of random model (default: factored J_ij U(a,b))")
    g.add_argument("--L", type=_positive_int, default=20, help="number of sites (default: 20)")
    g.add_argument("--q", type=_positive_int, default=4, help="number of colours (default: 4)")
    g.add_argument("--graph", choices=("gaussian", "erdos_renyi"), default="gaussian", help="site couplings J_ij: dense Gaussian or sparse Erdos-Renyi (default: gaussian)")
    g.add_argument("--colours", choices=("random", "potts"), default="random", help="colour matrix U: random symmetric or the identity (default: random)")
    g.add_argument("--coupling-scale", type=_non_negative_float, default=0.5, help="scale of the couplings (default: 0.5)")
    g = p.add_argument_group("sampler")
    g.add_argument("--method", choices=("gibbs", "metropolis"), default="gibbs", help="MCMC kernel (default: gibbs)")
    g.add_argument("--schedule", choices=("sequential", "random"), default="sequential",
                   help="site order within a sweep (default: sequential)")
    g.add_argument("--beta", type=_non_negative_float, default=1.0, help="inverse temperature (default: 1)")
    g.add_argument("--chains", type=_positive_int, default=100, help="independent chains (default: 100)")
    g.add_argument("--samples", type=_positive_int, default=500, help="recorded samples per chain (default: 500)")
    g.add_argument("--burnin", type=_non_negative_int, default=200, help="burn-in sweeps (default: 200)")
    g.add_argument("--thin", type=_positive_int, default=1, help="sweeps between recorded samples (default: 1)")
    _common(p, "jaxpotts_sample")
    p.set_defaults(func=_sample)


# ----------------------------------------------------------------------------- fit

def _load_training_data(args):
    """(seqs[M, L] int32, weights or None, q, description) from an NPZ or an alignment file."""
    import numpy as np

    path: Path = args.data
    if not path.exists():
        raise UserError(f"input file {path} does not exist")
    if path.is_dir():
        raise UserError(f"input {path} is a folder; give an NPZ written by 'jaxpotts sample' or an alignment file")
    if path.suffix == ".npz":
        try:
            data = np.load(path)
        except Exception as err:
            raise UserError(f"cannot read {path} as NPZ: {err}") from None
        if "sequences" not in data:
            raise UserError(f"{path} has no 'sequences' array (keys: {', '.join(data.files) or 'none'})")
        seqs = np.asarray(data["sequences"])
        if seqs.dtype.kind not in "iu" or seqs.ndim < 2:
            raise UserError(f"{path}: 'sequences' must be an integer array [..., L], got {seqs.dtype} {seqs.shape}")
        seqs = seqs.reshape(-1, seqs.shape[-1]).astype(np.int32)
        if seqs.size and seqs.min() < 0:
            raise UserError(f"{path}: colours must be >= 0, found {seqs.min()}")
        stored_q = int(data["q"]) if "q" in data else None
        q = args.q or stored_q or int(seqs.max()) + 1
        q_from = "--q" if args.q else "file" if stored_q else "largest colour + 1"
        if stored_q is not None and args.q is not None and args.q != stored_q:
            raise UserError(f"--q {args.q} contradicts q = {stored_q} stored in {path}")
        if seqs.size and seqs.max() >= q:
            raise UserError(f"{path}: colours go up to {seqs.max()}, which needs q > {seqs.max()}, but q = {q}")
        weights = None
        if "weights" in data and not args.no_weights:
            weights = np.asarray(data["weights"], np.float64).reshape(-1)
            if weights.shape != (seqs.shape[0],):
                raise UserError(f"{path}: 'weights' has {weights.size} entries for {seqs.shape[0]} sequences")
        return seqs, weights, q, {"format": "npz", "q_from": q_from,
                                  "weights": "file" if weights is not None else "uniform"}
    from .msa import read_alignment, sequence_weights

    aln = read_alignment(path, alphabet=args.alphabet, max_gap_fraction=args.max_gap_fraction,
                         max_column_gap_fraction=args.max_column_gap_fraction)
    seqs, q = aln.seqs, aln.alphabet.q
    if args.q is not None and args.q != q:
        raise UserError(f"--q {args.q} contradicts the {aln.alphabet.name} alphabet's q = {q}")
    weights = None if args.no_weights else np.asarray(sequence_weights(seqs, args.theta, q=q), np.float64)
    info = {"format": "alignment", "alphabet": aln.alphabet.name, "n_sequences_file": int(aln.n_sequences),
            "n_columns_file": int(aln.n_columns),
            "weights": "uniform" if weights is None else f"identity threshold {args.theta}",
            "M_eff": float(seqs.shape[0] if weights is None else weights.sum())}
    return seqs, weights, q, info


def _fit_defaults(args) -> dict:
    """Per-model defaults for the options left unset."""
    plm, transformer = args.kind == "plm", args.kind == "transformer"
    optimizer = args.optimizer or ("lbfgs" if plm else "adam")
    steps, epochs = args.steps, args.epochs
    if steps is None and epochs is None:
        steps, epochs = (500, None) if optimizer == "lbfgs" else (None, 20)
    batch = args.batch_size if args.batch_size is not None else (None if optimizer == "lbfgs" else 128)
    return dict(
        optimizer=optimizer, n_steps=steps, n_epochs=epochs, batch_size=batch,
        loss=args.loss or ("stochastic" if transformer else "mlm"),
        l2=args.l2 if args.l2 is not None else (0.01 if plm else 0.0),
        l2_fields=args.l2_fields if args.l2_fields is not None else (0.01 if plm else 0.0),
        validation_fraction=args.val_fraction if args.val_fraction is not None else (0.0 if plm else 0.1),
    )


def _build_model(args, L: int, q: int, key):
    from .attention import FactoredAttention, Transformer

    if args.kind == "attention":
        return FactoredAttention(L, q, args.heads, args.head_dim, key=key, softmax=args.attention == "softmax",
                                 fields=not args.no_fields)
    if args.kind == "transformer":
        return Transformer(L, q, args.layers, key=key, d_model=args.d_model, n_heads=args.heads, d_mlp=args.d_mlp)
    return None  # plm: fit_plm builds its zero initialisation


def _fit(args) -> dict:
    import jax
    import numpy as np

    from . import plotting
    from .sharding import default_mesh, pl_work
    from .training import fit, fit_plm, save_model

    seqs, weights, q, data_info = _load_training_data(args)
    M, L = seqs.shape
    if M < 2:
        raise UserError(f"need at least 2 sequences to fit, got {M}")
    settings = _fit_defaults(args)
    k_init, k_fit = jax.random.split(jax.random.PRNGKey(args.seed))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.ckpt"
    if args.resume and not ckpt.exists():
        _say(args, f"note: --resume but no checkpoint in {out}; starting from the beginning")
    elif args.resume:
        _say(args, f"resuming from {ckpt}")
    elif ckpt.exists():
        _say(args, f"note: overwriting the checkpoint in {out} (use --resume to continue it)")
    options = dict(
        key=k_fit, weights=None if weights is None else np.asarray(weights, np.float32),
        optimizer=settings["optimizer"], n_steps=settings["n_steps"], n_epochs=settings["n_epochs"],
        batch_size=settings["batch_size"], loss=settings["loss"], l2=settings["l2"], l2_fields=settings["l2_fields"],
        validation_fraction=settings["validation_fraction"], patience=args.patience, eval_every=args.eval_every,
        progress=_progress(args), checkpoint_path=ckpt, resume=args.resume,
        mesh=default_mesh(pl_work(M if settings["batch_size"] is None else settings["batch_size"], L, q)),
    )
    if args.lr is not None:
        options["learning_rate"] = args.lr
    _say(args, f"fit {args.kind}: {M} sequences of length L={L}, q={q} ({data_info['format']}, weights "
               f"{data_info['weights']}); optimizer {settings['optimizer']}, "
               + (f"{settings['n_steps']} steps" if settings["n_steps"] else f"{settings['n_epochs']} epochs")
               + (f", batch {settings['batch_size']}" if settings["batch_size"] else ", full batch"))
    resumed = bool(args.resume and ckpt.exists())
    t0 = time.perf_counter()
    if args.kind == "plm":
        if settings["loss"] != "mlm":
            raise UserError("plm fits the exact pseudo-likelihood; --loss stochastic applies to attention/transformer")
        model, history = fit_plm(seqs, q=q, **options)
    else:
        model, history = fit(_build_model(args, L, q, k_init), seqs, **options)
    seconds = time.perf_counter() - t0

    model_args = {k: getattr(args, k) for k in ("heads", "head_dim", "attention", "no_fields", "layers", "d_model",
                                                 "d_mlp") if args.kind != "plm"}
    hyper = dict(kind=args.kind, data=str(args.data), seed=args.seed, L=L, q=q, **settings, lr=args.lr,
                 patience=args.patience, **model_args)
    save_model(out / "model.eqx", model, **json.loads(json.dumps(hyper, default=str)))
    write_json(out / "history.json", history.to_dict())
    h = history
    last = lambda a: float(a[-1]) if len(a) else float("nan")  # noqa: E731
    summary = dict(kind=args.kind, M=M, L=L, q=q, data=str(args.data), **data_info, **settings, steps=int(h.step[-1]) if len(h.step) else 0,
                   train_loss=last(h.train_loss), val_loss=last(h.val_loss), best_step=int(h.best_step),
                   best_val_loss=float(h.best_val_loss), stopped_early=bool(h.stopped_early), converged=bool(h.converged),
                   seconds=seconds, resumed=resumed)
    histories = {args.kind: history}
    floor = floor_se = None
    if args.true_model is not None:
        summary.update(_compare_with_truth(args, model, seqs, out))
        floor, floor_se = summary.get("floor"), summary.get("floor_stderr")
    fig = plotting.plot_loss_curves(histories, floor=floor, floor_stderr=floor_se, which=("train", "val"),
                                    title=f"{args.kind} on {Path(args.data).name} (M = {M}, L = {L}, q = {q})")
    plotting.save_figure(fig, out / "loss_curve.png")
    write_json(out / "fit.json", summary)
    _say(args, markdown_table([summary], ["kind", "M", "L", "q", "steps", "train_loss", "val_loss", "best_step",
                                          "converged", "seconds"]),
         f"wrote model.eqx (+ .json), history.json, fit.json, loss_curve.png/.pdf, checkpoint.ckpt to {out}")
    return summary


def _compare_with_truth(args, model, seqs, out: Path) -> dict:
    """Entropy floor of the generating model and, for one-head attention, the coupling comparison."""
    from . import plotting
    from .attention import FactoredAttention
    from .evaluation import compare_factored, entropy_floor
    from .potts import FactoredPotts
    from .training import load_model

    if not args.true_model.exists():
        raise UserError(f"--true-model {args.true_model} does not exist")
    true, _ = load_model(args.true_model)
    if (true.L, true.q) != (seqs.shape[1], model.q):
        raise UserError(f"--true-model has L={true.L}, q={true.q} but the data L={seqs.shape[1]}, q={model.q}")
    floor, floor_se = entropy_floor(true, seqs)
    result = dict(floor=floor, floor_stderr=floor_se)
    if isinstance(model, FactoredAttention) and model.n_heads == 1 and isinstance(true, FactoredPotts):
        cmp = compare_factored(model, true)
        result["couplings"] = cmp.metrics()
        plotting.save_figure(plotting.plot_coupling_comparison(cmp), out / "couplings.png")
        _say(args, f"couplings vs {args.true_model}: corr(J, A) {cmp.corr_J:.4f}, corr(U', V') {cmp.corr_U:.4f}, "
                   f"relative error of the gauge-fixed couplings {cmp.rel_err_couplings:.3f} (couplings.png)")
    _say(args, f"floor (conditional entropy of the true model on the data): {floor:.4f} +- {floor_se:.4f}")
    return result


def _add_fit(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit plmDCA, factored attention or a Transformer to sequences",
        description="Fit a model by pseudo-likelihood / masked-language modelling to sequences from an NPZ written "
                    "by 'jaxpotts sample' (key 'sequences', optional 'weights' and 'q') or from an alignment "
                    "(FASTA/A2M/A3M/Stockholm; DCA sequence weights). Writes model.eqx (+ .json hyper-parameters, "
                    "load with jaxpotts.training.load_model), history.json, fit.json, loss_curve.png/.pdf and "
                    "checkpoint.ckpt (continue with --resume).")
    p.add_argument("kind", choices=("plm", "attention", "transformer"),
                   help="plm: asymmetric plmDCA (dense couplings); attention: factored attention; "
                        "transformer: the standard Transformer baseline")
    p.add_argument("data", type=Path, help="NPZ with 'sequences' or an alignment file")
    g = p.add_argument_group("data")
    g.add_argument("--q", type=_positive_int, default=None, help="number of colours (default: from the file or alphabet)")
    g.add_argument("--alphabet", default="protein", help="alignment alphabet: protein, rna, binary or the symbols (default: protein)")
    g.add_argument("--theta", type=_fraction, default=0.8, help="identity threshold of the sequence weights (default: 0.8)")
    g.add_argument("--no-weights", action="store_true", help="uniform sequence weights")
    g.add_argument("--max-gap-fraction", type=_non_negative_float, default=None, help="drop sequences with more gaps")
    g.add_argument("--max-column-gap-fraction", type=_non_negative_float, default=None, help="drop columns with more gaps")
    g.add_argument("--true-model", type=Path, default=None, metavar="MODEL",
                   help="the generating model (e.g. model.eqx of 'jaxpotts sample'): draw its entropy floor, and "
                        "compare couplings for one-head attention")
    g = p.add_argument_group("model")
    g.add_argument("--heads", type=_positive_int, default=None, help="attention heads (attention: 1, transformer: 4)")
    g.add_argument("--head-dim", type=_positive_int, default=8, help="query/key dimension of softmax attention (default: 8)")
    g.add_argument("--attention", choices=("free", "softmax"), default="free",
                   help="factored attention weights: free L x L matrices (J_ij U(a,b) exactly) or positional softmax")
    g.add_argument("--no-fields", action="store_true", help="factored attention without per-site fields")
    g.add_argument("--layers", type=_positive_int, default=1, help="transformer blocks (default: 1)")
    g.add_argument("--d-model", type=_positive_int, default=32, help="transformer width (default: 32)")
    g.add_argument("--d-mlp", type=_positive_int, default=None, help="transformer MLP width (default: 4 d_model)")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=("adam", "sgd", "lbfgs"), default=None, help="default: lbfgs for plm, else adam")
    g.add_argument("--lr", type=_positive_float, default=None, help="learning rate of adam/sgd (default: 0.01)")
    g.add_argument("--steps", type=_positive_int, default=None, help="optimiser steps (default: 500 for lbfgs)")
    g.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default: 20 for adam/sgd)")
    g.add_argument("--batch-size", type=_positive_int, default=None, help="sequences per step (default: 128; lbfgs: all)")
    g.add_argument("--loss", choices=("mlm", "stochastic"), default=None,
                   help="mlm: every site masked (= PL); stochastic: one random site per sequence (default for transformer)")
    g.add_argument("--l2", type=_non_negative_float, default=None,
                   help="lambda_J, plmDCA's convention, see docs/conventions.md (default: 0.01 for plm, else 0)")
    g.add_argument("--l2-fields", type=_non_negative_float, default=None, help="lambda_h (default: 0.01 for plm, else 0)")
    g.add_argument("--val-fraction", type=_fraction, default=None,
                   help="fraction held out for validation; the best validation model is kept (default: 0.1, plm: 0)")
    g.add_argument("--patience", type=_positive_int, default=None, help="stop after this many evaluations without improvement")
    g.add_argument("--eval-every", type=_positive_int, default=None, help="steps between evaluations (default: one epoch)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.ckpt (same data, seed and settings; "
                                                         "--steps/--epochs may grow)")
    _common(p, "jaxpotts_fit")
    p.set_defaults(func=_fit)


def _check_fit_args(args) -> None:
    if args.func is not _fit:
        return
    if args.steps is not None and args.epochs is not None:
        raise UserError("give --steps or --epochs, not both")
    if args.heads is None:
        args.heads = 4 if args.kind == "transformer" else 1
    if args.kind == "transformer" and args.d_model % args.heads:
        raise UserError(f"--heads {args.heads} must divide --d-model {args.d_model}")
    if args.optimizer == "lbfgs" and args.batch_size is not None:
        raise UserError("lbfgs uses the full batch; drop --batch-size")
    if args.optimizer == "lbfgs" and args.loss == "stochastic":
        raise UserError("lbfgs needs the deterministic --loss mlm")
    if args.kind == "transformer" and args.optimizer == "lbfgs" and args.loss is None:
        args.loss = "mlm"


# ----------------------------------------------------------------------------- replica


def _parse_grid(values: Sequence[str], name: str) -> list[float]:
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


def _colour_matrix(text: str, q: int):
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


def _replica(args) -> dict:
    import jax
    import numpy as np

    from . import plotting, replica
    from ._progress import progress_bar
    from ._report import jsonable
    from .demo import _enable_x64

    alphas = _parse_grid(args.alphas, "--alphas")
    lams = _parse_grid(args.lambdas, "--lambdas")
    sim_alphas = _parse_grid(args.simulate, "--simulate") if args.simulate else []
    U, U_label = _colour_matrix(args.U, args.q)
    grid = sorted(set(alphas) | set(sim_alphas))
    kinds = list(dict.fromkeys(args.kind))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    scenarios = {kind: replica.Scenario(args.q, U, args.rho, kind) for kind in kinds}
    progress = _progress(args)
    panels = {kind: f"q={args.q}, U={U_label}, rho={args.rho:g}, {kind}" for kind in kinds}
    tables, curves = [], {}
    with _enable_x64():  # the theory in float64
        for kind, sc in scenarios.items():
            table = replica.learning_curve(sc, grid, lams, progress=progress)
            table = {"kind": np.array([kind] * len(table["alpha"])), **table}
            curves[panels[kind]] = table
            tables.append(table)
    full = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    replica.write_csv(full, out / "curve.csv")
    replica.write_json(full, out / "curve.json", q=args.q, U=U.tolist(), rho=args.rho, kinds=kinds, lambdas=lams,
                       alphas=grid, result_messages={str(k): v for k, v in replica.result_messages().items()})
    n_bad = int((~full["converged"]).sum())

    points = []
    if sim_alphas:
        key = jax.random.PRNGKey(args.seed)
        todo = [(kind, lam, a) for kind in kinds for lam in lams for a in sim_alphas]
        with progress_bar(len(todo), "replica simulations", progress, unit="point") as bar:
            for i, (kind, lam, alpha) in enumerate(todo):
                res = replica.simulate(scenarios[kind], alpha, lam, N=args.N, key=jax.random.fold_in(key, i),
                                       n_seeds=args.seeds, n_test=args.n_test)
                t = curves[panels[kind]]
                j = int(np.flatnonzero((t["lam"] == lam) & np.isclose(t["alpha"], alpha))[0])
                row = dict(panel=panels[kind], kind=kind, lam=lam, alpha=alpha,
                           N=args.N, M=res.M, seeds=args.seeds)
                for name in replica.OBSERVABLES:
                    row[name], row[name + "_se"] = float(res.mean[name]), float(res.stderr[name])
                    if name in t:
                        row[name + "_theory"] = float(t[name][j])
                points.append(row)
                bar.update(1)
        replica.write_csv({k: np.array([r[k] for r in points]) for k in points[0]}, out / "simulations.csv")
        write_json(out / "simulations.json", points)
    fig = plotting.plot_replica_curves(curves, points, observable=args.observable,
                                       title=f"replica learning curve ({args.observable.replace('_', ' ')})")
    plotting.save_figure(fig, out / "replica.png")
    rows = [{k: full[k][i] for k in ("kind", "lam", "alpha", "m", "Q", "test_loss", "excess_loss", "coupling_error",
                                     "converged")} for i in range(len(full["alpha"]))]
    _say(args, markdown_table(rows, list(rows[0])))
    if points:
        _say(args, "", "simulations (mean +- stderr over seeds) against theory:",
             markdown_table(points, ["kind", "lam", "alpha", "N", "excess_loss", "excess_loss_se", "excess_loss_theory"]))
    if n_bad:
        print(f"jaxpotts: warning: {n_bad} of {len(rows)} points did not converge (see the 'result' column of "
              f"curve.csv)", file=sys.stderr)
    _say(args, f"wrote curve.csv, curve.json{', simulations.csv/.json' if points else ''}, replica.png/.pdf to {out}")
    return jsonable({"n_points": len(rows), "not_converged": n_bad, "simulations": len(points)})


def _add_replica(sub) -> None:
    p = sub.add_parser(
        "replica", help="replica learning curve of one learned conditional (+ finite-N simulations)",
        description="Solve the replica-symmetric saddle point (docs/replica.md) on a grid of alpha = M/N for "
                    "each ridge lambda, with continuation along alpha, in float64. Optionally overlay simulations "
                    "of the same estimator at finite N (--simulate). Writes curve.csv, curve.json, "
                    "simulations.csv/.json and replica.png/.pdf.")
    p.add_argument("--q", type=_positive_int, default=3, help="number of colours (default: 3)")
    p.add_argument("--U", default="identity",
                   help="colour matrix: 'identity' (Potts), a .npy/.json/.txt/.csv file, or a JSON string such as "
                        "'[[1,0],[0,1]]'; symmetric with constant row sums (default: identity)")
    p.add_argument("--rho", type=_positive_float, default=9.0, help="teacher strength |J*|^2 (default: 9)")
    p.add_argument("--kind", nargs="+", choices=("star", "independent"), default=["star"],
                   help="scenario(s): star-graph Potts model or independent inputs (default: star)")
    p.add_argument("--alphas", nargs="+", default=["0.2:20:25"], metavar="A",
                   help="sample ratios M/N: numbers, or START:STOP:NUM log-spaced (default: 0.2:20:25)")
    p.add_argument("--lambdas", nargs="+", default=["1.0"], metavar="LAM", help="ridge strengths (default: 1)")
    p.add_argument("--observable", default="excess_loss",
                   choices=("excess_loss", "test_loss", "train_loss", "coupling_error", "m", "Q"),
                   help="what the figure shows (default: excess_loss)")
    g = p.add_argument_group("simulations")
    g.add_argument("--simulate", nargs="+", default=None, metavar="A", help="alphas at which to simulate (none by default)")
    g.add_argument("--N", type=_positive_int, default=200, help="input sites of a simulation (default: 200)")
    g.add_argument("--seeds", type=_positive_int, default=3, help="teachers / data sets per point (default: 3)")
    g.add_argument("--n-test", type=_positive_int, default=10_000, help="test samples per seed (default: 10000)")
    _common(p, "jaxpotts_replica")
    p.set_defaults(func=_replica)


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
    if args.json:
        print(json.dumps(info))
    elif not args.quiet:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k.ljust(width)}  {v}")
    return info


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="versions, devices and precision",
                       description="Print versions of jaxpotts and its dependencies, JAX devices and x64.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _common(p, ".")
    p.set_defaults(func=_info)


# ----------------------------------------------------------------------------- contacts


def _contacts(args) -> dict:
    import jax
    import numpy as np

    from . import contacts, plotting
    from .statistics import generation_check
    from .training import save_model

    path: Path = args.alignment
    if not path.exists():
        raise UserError(f"alignment file {path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give an alignment file (FASTA, A2M/A3M or Stockholm)")
    if args.distances is not None and not args.distances.exists():
        raise UserError(f"distance file {args.distances} does not exist")
    options = {}
    for name, key in (("l2", "l2"), ("l2_fields", "l2_fields"), ("steps", "n_steps"), ("ftol", "ftol")):
        if getattr(args, name) is not None:
            options[key] = getattr(args, name)
    if args.method == "attention":
        options.update({k: v for k, v in (("n_heads", args.heads), ("head_dim", args.head_dim)) if v is not None})
    elif args.heads is not None or args.head_dim is not None:
        raise UserError("--heads and --head-dim apply to --method attention")
    k_fit, k_gen = jax.random.split(jax.random.PRNGKey(args.seed))
    res = contacts.pipeline(path, args.method, key=k_fit, theta=args.theta, alphabet=args.alphabet,
                            max_gap_fraction=args.max_gap_fraction, progress=_progress(args), **options)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    aln, S = res.alignment, res.scores
    L = S.shape[0]
    report = {
        "alignment": str(path), "method": args.method, "L": L, "M": int(aln.M), "m_eff": res.m_eff,
        "n_sequences_file": int(aln.n_sequences), "steps": int(res.history.step[-1]) if len(res.history.step) else 0,
        "converged": bool(res.history.converged),
        "objective": float(res.history.objective[-1]) if len(res.history.objective) else None,
        "seconds": res.seconds, "options": res.options, "devices": [str(d) for d in jax.devices()],
    }
    D = None
    if args.distances is not None:
        D = contacts.read_distances(args.distances, L=L)
        report["precision"] = res.precision(D, min_sep=args.min_sep)
        report["contact_definition"] = {"threshold_angstrom": 8.0, "min_separation": args.min_sep}
    pairs = contacts.ranked_pairs(S, args.min_sep)
    with open(out / "scores.csv", "w") as fh:
        fh.write("i,j,score" + (",distance,contact" if D is not None else "") + "\n")
        for i, j in pairs:
            extra = f",{D[i, j]:.3f},{int(D[i, j] < 8.0)}" if D is not None and np.isfinite(D[i, j]) else (",," if D is not None else "")
            fh.write(f"{i + 1},{j + 1},{S[i, j]:.6g}{extra}\n")
    np.savez_compressed(out / "scores.npz", scores=S, columns=aln.columns)
    if D is not None:
        fig = contacts.plot_contact_map(S, contacts.contact_map(D), L, args.min_sep, known=np.isfinite(D),
                                        title=f"{path.name}: top L = {L} pairs, {args.method}")
        plotting.save_figure(fig, out / "contact_map.png")
    if args.generation_check:
        report["generation"] = generation_check(res.potts, aln.seqs, res.weights, key=k_gen, n_chains=args.chains,
                                                progress=_progress(args))
    if args.save_model:
        save_model(out / "model.eqx", res.model, method=args.method, L=L, q=int(aln.alphabet.q))
    write_json(out / "contacts.json", report)

    top = [{"rank": r + 1, "i": int(i) + 1, "j": int(j) + 1, "score": float(S[i, j]),
            **({"distance": float(D[i, j])} if D is not None else {})} for r, (i, j) in enumerate(pairs[:10])]
    lines = [f"{path.name}: L = {L}, M = {aln.M}, M_eff = {res.m_eff:.1f}; {args.method} fit in "
             f"{res.seconds['fit']:.1f} s ({report['steps']} iterations), whole pipeline {res.seconds['total']:.1f} s",
             "", markdown_table(top, list(top[0]) if top else ["rank"])]
    if D is not None:
        lines += ["", "precision (contact: distance < 8 A, |i - j| >= %d): " % args.min_sep
                  + ", ".join(f"PPV@{k} = {v:.3f}" for k, v in report["precision"].items())]
    if args.generation_check:
        g = report["generation"]
        lines += ["", f"generation check: Pearson r of f_i {g['site']['pearson']:.3f}, of C_ij {g['connected']['pearson']:.3f} "
                      f"(slope {g['connected']['slope']:.2f}); sampler tau {g['sampler']['tau']:.2f}, R-hat {g['sampler']['rhat']:.3f}"]
    lines += ["", f"wrote {out}/contacts.json, scores.csv, scores.npz" + (", contact_map.png/pdf" if D is not None else "")
              + (", model.eqx" if args.save_model else "")]
    _say(args, *lines)
    return report


def _add_contacts(sub) -> None:
    p = sub.add_parser(
        "contacts", help="predict residue contacts from a protein alignment (plmDCA or factored attention)",
        description="Read an alignment, weight its sequences, fit plmDCA or a factored-attention layer by "
                    "pseudo-likelihood, and rank residue pairs by APC-corrected Frobenius scores "
                    "(jaxpotts.contacts.pipeline). With --distances, also precision at L/5, L/2, L and a "
                    "contact-map figure. Writes contacts.json, scores.csv (ranked pairs, 1-based match "
                    "columns), scores.npz and contact_map.png/pdf.",
    )
    p.add_argument("alignment", type=Path, help="FASTA, A2M/A3M or Stockholm alignment (gzip ok)")
    p.add_argument("--method", choices=("plm", "attention"), default="plm", help="default: plm")
    p.add_argument("--distances", type=Path, default=None,
                   help="residue distance file (rows 'i j ... distance', 1-based match columns) for precision")
    p.add_argument("--min-sep", type=_positive_int, default=5, help="minimal |i - j| of ranked pairs (default: 5)")
    g = p.add_argument_group("data")
    g.add_argument("--alphabet", default="protein", help="protein (default), rna, binary or a string of symbols")
    g.add_argument("--theta", type=_positive_float, default=0.8, help="identity threshold of the weights (default: 0.8)")
    g.add_argument("--max-gap-fraction", type=_fraction, default=None, help="drop sequences with more gaps")
    g = p.add_argument_group("fit (defaults: jaxpotts.contacts.PLM_DEFAULTS / ATTENTION_DEFAULTS)")
    g.add_argument("--l2", type=_non_negative_float, default=None, help="lambda_J (plmDCA convention; default plm 0.01, attention 0.001)")
    g.add_argument("--l2-fields", type=_non_negative_float, default=None, help="lambda_h (default 0.01)")
    g.add_argument("--steps", type=_positive_int, default=None, help="most optimiser steps: L-BFGS iterations for plm (default 300), Adam minibatch steps for attention (default: 200 epochs)")
    g.add_argument("--ftol", type=_non_negative_float, default=None, help="plm: stop when the objective fell by less than this fraction over 5 iterations (default 0.003)")
    g.add_argument("--heads", type=_positive_int, default=None, help="attention heads (default 32)")
    g.add_argument("--head-dim", type=_positive_int, default=None, help="attention head dimension (default 23)")
    g = p.add_argument_group("outputs")
    g.add_argument("--generation-check", action="store_true",
                   help="sample the fitted model and compare one- and two-site statistics with the data")
    g.add_argument("--chains", type=_positive_int, default=1000, help="chains of the generation check (default 1000)")
    g.add_argument("--save-model", action="store_true", help="also write the fitted model (model.eqx + JSON)")
    _common(p, "jaxpotts_contacts")
    p.set_defaults(func=_contacts)


# ----------------------------------------------------------------------------- parser

SUBCOMMANDS: tuple[Callable, ...] = (_add_demo, _add_sample, _add_fit, _add_contacts, _add_replica, _add_info)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxpotts",
        description="Generalized Potts models, factored self-attention and their replica theory, in JAX. "
                    "Run 'jaxpotts COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    from ._cli_mutations import add_scan, add_score  # mutation effects (issue 17)

    add_score(sub)
    add_scan(sub)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _configure_jax() -> None:
    """Before JAX runs anything: one CPU device per core, over which sampling splits its chains
    and fits their sequences (`jaxpotts.sharding`), and XLA's persistent compilation cache, so a
    second run of the same command skips compilation (``JAXPOTTS_CACHE_DIR``, else JAX's
    ``JAX_COMPILATION_CACHE_DIR``, else ~/.cache/jaxpotts/xla; ``JAXPOTTS_CACHE_DIR=""`` turns it
    off). Nothing changes when JAX already runs; library users make these choices themselves."""
    import os

    import jax

    from .sharding import use_cpu_cores

    try:
        use_cpu_cores()
    except RuntimeError:  # JAX already runs (main() called from a program): leave its settings alone
        return
    cache = os.environ.get("JAXPOTTS_CACHE_DIR")
    if cache is None and "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # JAX's own setting wins
        cache = str(Path.home() / ".cache" / "jaxpotts" / "xla")
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable = args.func
    try:
        _check_fit_args(args)
        _configure_jax()
        func(args)
    except KeyboardInterrupt:
        print("jaxpotts: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
        if args.debug:
            raise
        print(f"jaxpotts: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # an unexpected failure: still one line, the traceback under --debug
        if args.debug:
            raise
        print(f"jaxpotts: internal error: {type(err).__name__}: {_one_line(err)} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""`jaxpotts fit {plm,attention,transformer,bm} DATA`: fit a model to sampled sequences or an alignment."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import defaults
from .._report import markdown_table, write_json
from . import _fit_bm
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
        return (
            seqs,
            weights,
            q,
            {"format": "npz", "q_from": q_from, "weights": "file" if weights is not None else "uniform"},
        )
    from ..msa import read_alignment, sequence_weights

    aln = read_alignment(
        path,
        alphabet=args.alphabet,
        unknown=args.unknown,
        max_gap_fraction=args.max_gap_fraction,
        max_column_gap_fraction=args.max_column_gap_fraction,
    )
    seqs, q = aln.seqs, aln.alphabet.q
    if args.q is not None and args.q != q:
        raise UserError(f"--q {args.q} contradicts the {aln.alphabet.name} alphabet's q = {q}")
    weights = None if args.no_weights else np.asarray(sequence_weights(seqs, args.theta, q=q), np.float64)
    info = {
        "format": "alignment",
        "alphabet": aln.alphabet.name,
        "n_sequences_file": int(aln.n_sequences),
        "n_columns_file": int(aln.n_columns),
        "weights": "uniform" if weights is None else f"identity threshold {args.theta}",
        "M_eff": float(seqs.shape[0] if weights is None else weights.sum()),
    }
    return seqs, weights, q, info


#: The defaults table entry of each `jaxpotts fit` kind.
TABLE = {
    "plm": defaults.PLM,
    "attention": defaults.ATTENTION,
    "transformer": defaults.TRANSFORMER,
    "bm": defaults.BOLTZMANN,
}

# CLI option -> fit option of the defaults table.
_OPTIONS = {
    "optimizer": "optimizer",
    "steps": "n_steps",
    "epochs": "n_epochs",
    "batch_size": "batch_size",
    "loss": "loss",
    "l2": "l2",
    "l2_fields": "l2_fields",
    "val_fraction": "validation_fraction",
    "lr": "learning_rate",
    "patience": "patience",
    "eval_every": "eval_every",
    "couplings": "couplings",
}


def _fit_defaults(args) -> dict:
    """The kind's defaults table (`jaxpotts.defaults`) with the options given on the command line."""
    given = {name: getattr(args, opt) for opt, name in _OPTIONS.items() if getattr(args, opt) is not None}
    if given.get("optimizer") == "lbfgs":
        # L-BFGS is full batch on the deterministic loss and has no learning rate; its length is in steps.
        given.setdefault("batch_size", None)
        given.setdefault("loss", "mlm")
        if "n_epochs" not in given:
            given.setdefault("n_steps", defaults.PLM.fit["n_steps"])
    settings = {k: v for k, v in TABLE[args.kind].settings(**given).items() if k not in TABLE[args.kind].model}
    if settings.get("optimizer") == "lbfgs":
        settings.pop("learning_rate", None)
    for name in ("n_steps", "n_epochs", "batch_size", "learning_rate"):
        settings.setdefault(name, None)
    settings.setdefault("loss", "mlm")
    return settings


def _per_kind(name: str) -> str:
    """'default: plm X, attention Y, transformer Z' from the table, for help texts."""
    return "default: " + ", ".join(f"{k} {TABLE[k].fit.get(name, 'none' if name != 'loss' else 'mlm')}" for k in TABLE)


def _default(kind: str, name: str):
    """A default of the table, for help texts."""
    m = TABLE[kind]
    return m.model.get(name, m.fit.get(name))


def _build_model(args, L: int, q: int, key):
    from ..attention import FactoredAttention, Transformer

    for name, value in (("head_dim", args.head_dim), ("layers", args.layers), ("d_model", args.d_model)):
        if value is None:
            setattr(
                args,
                name,
                _default(args.kind if args.kind != "plm" else "attention", {"layers": "n_layers"}.get(name, name))
                or _default("transformer", name),
            )
    if args.kind == "attention":
        return FactoredAttention(
            L, q, args.heads, args.head_dim, key=key, softmax=args.attention == "softmax", fields=not args.no_fields
        )
    if args.kind == "transformer":
        return Transformer(L, q, args.layers, key=key, d_model=args.d_model, n_heads=args.heads, d_mlp=args.d_mlp)
    return None  # plm: fit_plm builds its zero initialisation


def run(args) -> dict:
    import jax
    import numpy as np

    check_args(args)
    seqs, weights, q, data_info = _load_training_data(args)
    M, L = seqs.shape
    if M < 2:
        raise UserError(f"need at least 2 sequences to fit, got {M}")
    if args.kind == "bm":
        return _fit_bm.run(args, seqs, weights, q, data_info)
    settings = _fit_defaults(args)
    if args.kind == "plm":  # l2="auto" -> its number here, as the fit uses it (and saved)
        from ..training import plmdca_settings

        m_eff = float(M if weights is None else np.sum(np.asarray(weights, np.float64)))
        if m_eff > 0:  # bad weights are left to fit_plm's own error
            settings["l2"] = plmdca_settings(L, q, m_eff, l2=settings["l2"])["l2"]
    k_init, k_fit = jax.random.split(jax.random.PRNGKey(args.seed))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt, resumed = _checkpoint(args, out)
    model, history, seconds = _fit_model(args, seqs, weights, q, settings, data_info, ckpt, k_init, k_fit)
    _save_model(args, out / "model.eqx", model, settings, L, q)
    write_json(out / "history.json", history.to_dict())
    summary = _summary(args, history, seqs.shape, q, data_info, settings, seconds, resumed)
    _write_report(args, out, model, history, seqs, q, summary)
    return summary


def _checkpoint(args, out: Path) -> tuple[Path, bool]:
    """(OUT/checkpoint.ckpt, whether the fit resumes it), after saying whether it is resumed,
    missing or overwritten."""
    ckpt = out / "checkpoint.ckpt"
    if args.resume and not ckpt.exists():
        say(args, f"note: --resume but no checkpoint in {out}; starting from the beginning")
    elif args.resume:
        say(args, f"resuming from {ckpt}")
    elif ckpt.exists():
        say(args, f"note: overwriting the checkpoint in {out} (use --resume to continue it)")
    return ckpt, bool(args.resume and ckpt.exists())


def _fit_model(args, seqs, weights, q: int, settings: dict, data_info: dict, ckpt: Path, k_init, k_fit):
    """(model, history, seconds): the fit of `args.kind` to the sequences, after announcing it
    with its memory estimate."""
    import numpy as np

    from ..memory import fit_estimate
    from ..sharding import default_mesh, pl_work
    from ..training import fit, fit_plm

    M, L = seqs.shape
    options = dict(
        settings,
        key=k_fit,
        weights=None if weights is None else np.asarray(weights, np.float32),
        progress=show_progress(args),
        checkpoint_path=ckpt,
        resume=args.resume,
        mesh=default_mesh(pl_work(M if settings["batch_size"] is None else settings["batch_size"], L, q)),
        max_memory=args.max_memory,
    )
    start = None if args.kind == "plm" else _build_model(args, L, q, k_init)
    estimate = fit_estimate(
        L,
        q,
        M,
        model=start,
        kind="plm",
        optimizer=settings["optimizer"],
        batch_size=settings["batch_size"],
        n_devices=getattr(options["mesh"], "size", 1),
    )
    say(
        args,
        f"fit {args.kind}: {M} sequences of length L={L}, q={q} ({data_info['format']}, weights "
        f"{data_info['weights']}); optimizer {settings['optimizer']}, "
        + (f"{settings['n_steps']} steps" if settings["n_steps"] else f"{settings['n_epochs']} epochs")
        + (f", batch {settings['batch_size']}" if settings["batch_size"] else ", full batch")
        + f"; memory estimate {estimate}",
    )
    t0 = time.perf_counter()
    if args.kind == "plm":
        if settings["loss"] != "mlm":
            raise UserError("plm fits the exact pseudo-likelihood; --loss stochastic applies to attention/transformer")
        model, history = fit_plm(seqs, q=q, **options)  # fit_plm's start: PLM.model
    else:
        model, history = fit(start, seqs, **options)
    return model, history, time.perf_counter() - t0


def _save_model(args, path: Path, model, settings: dict, L: int, q: int) -> None:
    """model.eqx with the hyper-parameters (data, seed, settings, model options) in its JSON."""
    from ..serialization import save_model

    model_args = {
        k: getattr(args, k)
        for k in ("heads", "head_dim", "attention", "no_fields", "layers", "d_model", "d_mlp")
        if args.kind != "plm"
    }
    hyper = dict(kind=args.kind, data=str(args.data), seed=args.seed, L=L, q=q, **settings, **model_args)
    save_model(path, model, **json.loads(json.dumps(hyper, default=str)))


def _summary(args, history, shape, q: int, data_info: dict, settings: dict, seconds: float, resumed: bool) -> dict:
    """fit.json's content: the data, the settings and the last and best losses of the history."""
    M, L = shape
    h = history
    last = lambda a: float(a[-1]) if len(a) else float("nan")  # noqa: E731
    return dict(
        kind=args.kind,
        M=M,
        L=L,
        q=q,
        data=str(args.data),
        **data_info,
        **settings,
        steps=int(h.step[-1]) if len(h.step) else 0,
        train_loss=last(h.train_loss),
        val_loss=last(h.val_loss),
        best_step=int(h.best_step),
        best_val_loss=float(h.best_val_loss),
        stopped_early=bool(h.stopped_early),
        converged=bool(h.converged),
        seconds=seconds,
        resumed=resumed,
    )


def _write_report(args, out: Path, model, history, seqs, q: int, summary: dict) -> None:
    """The comparison with --true-model (into `summary`), loss_curve.png, fit.json and the table."""
    from .. import plotting

    M, L = seqs.shape
    histories = {args.kind: history}
    floor = floor_se = None
    if args.true_model is not None:
        summary.update(_compare_with_truth(args, model, seqs, out))
        floor, floor_se = summary.get("floor"), summary.get("floor_stderr")
    fig = plotting.plot_loss_curves(
        histories,
        floor=floor,
        floor_stderr=floor_se,
        which=("train", "val"),
        title=f"{args.kind} on {Path(args.data).name} (M = {M}, L = {L}, q = {q})",
    )
    plotting.save_figure(fig, out / "loss_curve.png")
    write_json(out / "fit.json", summary)
    say(
        args,
        markdown_table(
            [summary], ["kind", "M", "L", "q", "steps", "train_loss", "val_loss", "best_step", "converged", "seconds"]
        ),
        f"wrote model.eqx (+ .json), history.json, fit.json, loss_curve.png/.pdf, checkpoint.ckpt to {out}",
    )


def _compare_with_truth(args, model, seqs, out: Path) -> dict:
    """Entropy floor of the generating model and, for one-head attention, the coupling comparison."""
    from .. import plotting
    from ..attention import FactoredAttention
    from ..evaluation import compare_factored, entropy_floor
    from ..potts import FactoredPotts
    from ..serialization import load_model

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
        say(
            args,
            f"couplings vs {args.true_model}: corr(J, A) {cmp.corr_J:.4f}, corr(U', V') {cmp.corr_U:.4f}, "
            f"relative error of the gauge-fixed couplings {cmp.rel_err_couplings:.3f} (couplings.png)",
        )
    say(args, f"floor (conditional entropy of the true model on the data): {floor:.4f} +- {floor_se:.4f}")
    return result


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit plmDCA, factored attention, a Transformer or bmDCA (Boltzmann learning) to sequences",
        description="Fit a model by pseudo-likelihood / masked-language modelling to sequences from an NPZ written "
        "by 'jaxpotts sample' (key 'sequences', optional 'weights' and 'q') or from an alignment "
        "(FASTA/A2M/A3M/Stockholm; DCA sequence weights). Writes model.eqx (+ .json hyper-parameters, "
        "load with jaxpotts.serialization.load_model), history.json, fit.json, loss_curve.png/.pdf and "
        "checkpoint.ckpt (continue with --resume).",
    )
    p.add_argument(
        "kind",
        choices=tuple(TABLE),
        help="plm: asymmetric plmDCA (dense couplings); attention: factored attention; "
        "transformer: the standard Transformer baseline; bm: bmDCA, Boltzmann-machine learning",
    )
    p.add_argument("data", type=Path, help="NPZ with 'sequences' or an alignment file")
    _data_options(p)
    _model_options(p)
    _training_options(p)
    _fit_bm.add_options(p)
    add_memory_option(p)
    add_common(p, "jaxpotts_fit")
    p.set_defaults(func=run)


def _data_options(p) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--q", type=positive_int, default=None, help="number of colours (default: from the file or alphabet)"
    )
    g.add_argument(
        "--alphabet",
        default="protein",
        help="alignment alphabet: protein, rna, binary or the symbols (default: protein)",
    )
    add_unknown_option(g)
    g.add_argument(
        "--theta", type=fraction, default=0.8, help="identity threshold of the sequence weights (default: 0.8)"
    )
    g.add_argument("--no-weights", action="store_true", help="uniform sequence weights")
    g.add_argument("--max-gap-fraction", type=non_negative_float, default=None, help="drop sequences with more gaps")
    g.add_argument(
        "--max-column-gap-fraction", type=non_negative_float, default=None, help="drop columns with more gaps"
    )
    g.add_argument(
        "--true-model",
        type=Path,
        default=None,
        metavar="MODEL",
        help="the generating model (e.g. model.eqx of 'jaxpotts sample'): draw its entropy floor, and "
        "compare couplings for one-head attention",
    )


def _model_options(p) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--heads",
        type=positive_int,
        default=None,
        help=f"attention heads (attention: {_default('attention', 'n_heads')}, transformer: {_default('transformer', 'n_heads')})",
    )
    g.add_argument(
        "--head-dim",
        type=positive_int,
        default=None,
        help=f"query/key dimension of softmax attention (default: {_default('attention', 'head_dim')})",
    )
    g.add_argument(
        "--attention",
        choices=("free", "softmax"),
        default="free",
        help="factored attention weights: free L x L matrices (J_ij U(a,b) exactly) or positional softmax",
    )
    g.add_argument("--no-fields", action="store_true", help="factored attention without per-site fields")
    g.add_argument(
        "--layers",
        type=positive_int,
        default=None,
        help=f"transformer blocks (default: {_default('transformer', 'n_layers')})",
    )
    g.add_argument(
        "--d-model",
        type=positive_int,
        default=None,
        help=f"transformer width (default: {_default('transformer', 'd_model')})",
    )
    g.add_argument("--d-mlp", type=positive_int, default=None, help="transformer MLP width (default: 4 d_model)")


def _training_options(p) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=("adam", "sgd", "lbfgs"), default=None, help=_per_kind("optimizer"))
    g.add_argument("--lr", type=positive_float, default=None, help="learning rate of adam/sgd (default: 0.01)")
    g.add_argument("--steps", type=positive_int, default=None, help="optimiser steps (" + _per_kind("n_steps") + ")")
    g.add_argument("--epochs", type=positive_int, default=None, help="epochs (" + _per_kind("n_epochs") + ")")
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="sequences per step (" + _per_kind("batch_size") + "; none: all)",
    )
    g.add_argument(
        "--loss",
        choices=("mlm", "stochastic"),
        default=None,
        help="mlm: every site masked (= PL); stochastic: one random site per sequence (" + _per_kind("loss") + ")",
    )
    g.add_argument(
        "--l2",
        type=non_negative_float,
        default=None,
        help="lambda_J, plmDCA's convention, see docs/conventions.md (" + _per_kind("l2") + ")",
    )
    g.add_argument(
        "--l2-fields", type=non_negative_float, default=None, help="lambda_h (" + _per_kind("l2_fields") + ")"
    )
    g.add_argument(
        "--couplings",
        choices=("asymmetric", "symmetric"),
        default=None,
        help="plm: L independent conditionals (default) or one coupling per pair inside the objective "
        "(symmetric pseudo-likelihood, as plmc and CCMpred)",
    )
    g.add_argument(
        "--val-fraction",
        type=fraction,
        default=None,
        help="fraction held out for validation; the best validation model is kept ("
        + _per_kind("validation_fraction")
        + ")",
    )
    g.add_argument(
        "--patience", type=positive_int, default=None, help="stop after this many evaluations without improvement"
    )
    g.add_argument(
        "--eval-every", type=positive_int, default=None, help="steps between evaluations (default: one epoch)"
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.ckpt (same data, seed and settings; --steps/--epochs may grow)",
    )


def check_args(args) -> None:
    if args.steps is not None and args.epochs is not None:
        raise UserError("give --steps or --epochs, not both")
    if args.couplings is not None and args.kind != "plm":
        raise UserError("--couplings applies to 'jaxpotts fit plm'")
    if args.heads is None:
        args.heads = _default("transformer" if args.kind == "transformer" else "attention", "n_heads")
    if args.kind == "transformer" and args.d_model % args.heads:
        raise UserError(f"--heads {args.heads} must divide --d-model {args.d_model}")
    if args.optimizer == "lbfgs" and args.batch_size is not None:
        raise UserError("lbfgs uses the full batch; drop --batch-size")
    if args.optimizer == "lbfgs" and args.loss == "stochastic":
        raise UserError("lbfgs needs the deterministic --loss mlm")
    if args.kind == "transformer" and args.optimizer == "lbfgs" and args.loss is None:
        args.loss = "mlm"

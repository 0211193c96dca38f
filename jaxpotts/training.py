r"""The fit driver: `fit(model, seqs, key=...)` runs the fit engine (`jaxpotts.engine`) with
validation, early stopping, progress, checkpoints and a `History`; `fit_plm` is plmDCA.

`fit` minimises, in per-site units,

$$\frac{F(\theta)}{L} = \mathrm{MLM}(\theta) + \frac{R(\theta)}{L}, \qquad
R(\theta) = \frac{\lambda_J}{2}\sum_{i\ne j}\|J_{ij}\|_F^2 + \lambda_h\sum_i\|h_i\|^2$$

(`jaxpotts.losses`: MLM = PL / L, and $\lambda_J$ = `l2`, $\lambda_h$ = `l2_fields` are plmDCA's
`lambda_J`, `lambda_h`). Any model with `.L`, `.q` and `__call__(s) -> logits[L, q]` trains:
`FactoredAttention`, `Transformer`, and `PottsModel` (asymmetric plmDCA; its diagonal blocks
are held at zero).

How it runs. `jaxpotts.engine.advance` applies up to `eval_every` optimiser steps in one compiled
`lax.while_loop`; this driver loops over such chunks (one evaluation, progress tick and optional
checkpoint per chunk), and every chunk has the same shapes, so nothing retraces. Minibatches:
each epoch is a permutation of the training sequences, and when B does not divide M the last
batch is filled up with the first sequences of the same permutation (so every batch holds B
real sequences); a batch's data term is $\sum_{m\in b} w_m \ell_m / (B\,\bar w)$, an unbiased
estimate of the weighted mean ($\bar w$ = mean training weight), equal to it for a full batch.
All randomness (the validation split and the epoch permutations, drawn on the host by numpy
generators seeded with `key` and the epoch index; the masked sites of the stochastic loss, by
`fold_in(key, step)`) is derived from `key`, so a run is a deterministic function of its
arguments, and a resumed run reproduces an uninterrupted one exactly.

L-BFGS (`optimizer="lbfgs"`: `jaxpotts.optim.lbfgs`, backtracking Armijo line search; or any optax
line-search transformation such as `optax.lbfgs()`) needs the full batch and the deterministic
loss; the value and gradient found by the line search are reused through
`optax.value_and_grad_from_state`. It stops when the largest gradient component falls below
`tol`, the objective stalls (`ftol`), or the line search can no longer decrease the objective.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from . import defaults, engine, losses
from ._progress import progress_bar
from ._random import host_rng
from ._validation import check_sequences
from .engine import FitConfig, FitState
from .memory import check_memory, fit_estimate
from .potts import PottsModel
from .serialization import load_checkpoint, load_model, save_checkpoint, save_model
from .sharding import to_one_device

__all__ = ["History", "fit", "fit_plm", "plmdca_settings"]
# save_model, load_model, save_checkpoint, load_checkpoint moved to jaxpotts.serialization; they
# stay importable from here for one release (CHANGELOG.md).
_MOVED = (save_model, load_model, save_checkpoint, load_checkpoint)

_EVAL_BATCH = 256


# ----------------------------------------------------------------------------- history


@dataclasses.dataclass
class History:
    """What happened during `fit`. Arrays have one entry per evaluation (end of each chunk).

    Attributes:
        step: optimiser steps done at each evaluation.
        epoch: epochs done at each evaluation (steps / steps_per_epoch).
        train_loss: MLM loss on the training data (data term only, mean per site): the mean
            of the minibatch estimates over the chunk (exact for full-batch fits).
        val_loss: weighted MLM loss on the validation set (NaN without validation).
        test_loss: weighted MLM loss on `test_data` (NaN without it); recorded only, never used
            to select or stop.
        objective: the minimised objective (train_loss + penalty / L) at the last step of the chunk.
        step_loss: minibatch objective of every step.
        best_step: step of the lowest validation loss (the returned model when validation is
            used), else the last step.
        best_val_loss: that validation loss (NaN without validation).
        stopped_early: patience ran out.
        converged: L-BFGS reached `tol` or `ftol`, or could not decrease the objective any further.
        reached_target: the validation loss reached `target_loss` (training stopped there).
        wall_time: seconds spent in `fit` (this call, excluding a resumed run's past).
    """

    step: np.ndarray
    epoch: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    test_loss: np.ndarray
    objective: np.ndarray
    step_loss: np.ndarray
    best_step: int = 0
    best_val_loss: float = float("nan")
    stopped_early: bool = False
    converged: bool = False
    reached_target: bool = False
    wall_time: float = 0.0

    @classmethod
    def empty(cls) -> History:
        z = np.zeros((0,))
        return cls(step=z.astype(np.int64), epoch=z, train_loss=z, val_loss=z, test_loss=z, objective=z, step_loss=z)

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN written as null)."""

        def clean(x):
            if isinstance(x, np.ndarray):
                return [clean(v) for v in x.tolist()]
            if isinstance(x, float) and not math.isfinite(x):
                return None
            return x

        return {f.name: clean(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        def arr(v, dtype=np.float64):
            return np.array([np.nan if x is None else x for x in v], dtype=dtype)

        return cls(
            step=arr(d["step"], np.int64),
            epoch=arr(d["epoch"]),
            train_loss=arr(d["train_loss"]),
            val_loss=arr(d["val_loss"]),
            test_loss=arr(d["test_loss"]),
            objective=arr(d["objective"]),
            step_loss=arr(d["step_loss"]),
            best_step=int(d["best_step"]),
            best_val_loss=float("nan") if d["best_val_loss"] is None else float(d["best_val_loss"]),
            stopped_early=bool(d["stopped_early"]),
            converged=bool(d["converged"]),
            reached_target=bool(d.get("reached_target", False)),
            wall_time=float(d["wall_time"]),
        )

    def _append(self, step, epoch, train, val, test, objective, step_losses) -> None:
        self.step = np.append(self.step, step)
        self.epoch = np.append(self.epoch, epoch)
        self.train_loss = np.append(self.train_loss, train)
        self.val_loss = np.append(self.val_loss, val)
        self.test_loss = np.append(self.test_loss, test)
        self.objective = np.append(self.objective, objective)
        self.step_loss = np.concatenate([self.step_loss, step_losses])


# ----------------------------------------------------------------------------- held-out evaluation


@eqx.filter_jit
def _evaluate_chunk(params, static, seqs, weights, gaps: str) -> tuple[Scalar, Scalar]:
    """(sum_m w_m PL_m, sum_m w_m) over one fixed-size chunk of sequences."""
    model = eqx.combine(params, static)
    return losses.weighted_pseudo_likelihood_sum(model, seqs, weights, gaps=gaps), jnp.sum(weights)


def _evaluate(params, static, chunks, gaps: str = "state") -> float:
    """Weighted MLM loss of held-out data split in fixed-size chunks (one compilation per
    model, whatever the data size), with the fit's treatment of gaps; NaN without data."""
    if chunks is None:
        return math.nan
    num = den = 0.0
    for s, w in chunks:
        a, b = _evaluate_chunk(params, static, s, w, gaps)
        num, den = num + float(a), den + float(b)
    return num / (den * eqx.combine(params, static).L)


def _chunked(data, size: int = _EVAL_BATCH) -> list | None:
    """Held-out data as fixed-size (size, L) chunks, the last padded with zero-weight rows."""
    if data is None:
        return None
    seqs, weights = data
    M = seqs.shape[0]
    n = -(-M // size)
    pad = n * size - M
    s = np.concatenate([seqs, np.zeros((pad, seqs.shape[1]), seqs.dtype)]).reshape(n, size, -1)
    w = np.concatenate([weights, np.zeros((pad,), weights.dtype)]).reshape(n, size)
    return [(jnp.asarray(s[i]), jnp.asarray(w[i])) for i in range(n)]


# ----------------------------------------------------------------------------- data


def _check_held_out(data, name: str, L: int, q: int, dtype):
    """A held-out `(seqs, weights_or_None)` pair as numpy arrays (weights filled with ones)."""
    if data is None:
        return None
    if not isinstance(data, (tuple, list)) or len(data) not in (1, 2):
        raise TypeError(f"{name} must be a tuple (seqs, weights_or_None)")
    s = np.asarray(check_sequences(data[0], L, q, f"{name} sequences"), np.int32)
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"{name} sequences must be a non-empty (M, L={L}) array, got shape {s.shape}")
    w = losses.check_weights(data[1] if len(data) > 1 else None, s.shape[0])
    return s, (np.ones((s.shape[0],), dtype) if w is None else np.asarray(w, dtype))


@dataclasses.dataclass(frozen=True)
class _Data:
    """Training, validation and test sequences (numpy) after checks and the split."""

    seqs: np.ndarray
    weights: np.ndarray
    validation: tuple | None
    test: tuple | None
    fingerprint: str


def _prepare_data(L, q, dtype, seqs, weights, validation_data, test_data, fraction, key) -> _Data:
    seqs = check_sequences(seqs, L, q, "seqs")
    if seqs.ndim != 2:
        raise ValueError(f"seqs must have shape (M, L) = (M, {L}), got {tuple(seqs.shape)}")
    M = seqs.shape[0]
    if M == 0:
        raise ValueError("no sequences: the training data set is empty")
    w = losses.check_weights(weights, M)
    s = np.asarray(seqs, np.int32)
    w = np.ones((M,), dtype) if w is None else np.asarray(w, dtype)
    val = _check_held_out(validation_data, "validation_data", L, q, dtype)
    test = _check_held_out(test_data, "test_data", L, q, dtype)
    prints = (
        _fingerprint(s, w) + ("" if val is None else _fingerprint(*val)) + ("" if test is None else _fingerprint(*test))
    )
    if val is not None and fraction:
        raise ValueError("give either validation_fraction or validation_data, not both")
    if val is None and fraction:
        n_val = int(round(fraction * M))
        if n_val < 1 or n_val >= M:
            raise ValueError(
                f"validation_fraction={fraction} leaves {n_val} of {M} sequences for validation; "
                "need at least one for validation and one for training"
            )
        perm = host_rng(key).permutation(M)
        held, kept = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        s, w, val = s[kept], w[kept], (s[held], w[held])
    if not w.sum() > 0:
        raise ValueError("the training sequences all have zero weight")
    return _Data(s, w, val, test, prints)


class _Batches:
    """Minibatch index plan: epoch e is a permutation (seeded by the key and e), the last batch
    completed with the epoch's first sequences (n_pad < B <= M: not already in it), so every
    batch is B distinct real sequences."""

    def __init__(self, key, seqs: np.ndarray, weights: np.ndarray, B: int, chunk: int):
        self.key, self.seqs, self.weights, self.B, self.chunk = key, seqs, weights, B, chunk
        self.per_epoch = -(-seqs.shape[0] // B)
        self.n_pad = self.per_epoch * B - seqs.shape[0]
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            perm = host_rng(self.key, epoch).permutation(self.seqs.shape[0])
            self._orders[epoch] = np.concatenate([perm, perm[: self.n_pad]])
        return self._orders[epoch]

    def chunk_from(self, t0: int) -> tuple[np.ndarray, np.ndarray]:
        """(seqs[chunk, B, L], weights[chunk, B]) of steps t0 .. t0 + chunk - 1."""
        rows = []
        for t in range(t0, t0 + self.chunk):
            e, p = divmod(t, self.per_epoch)
            rows.append(self._order(e)[p * self.B : (p + 1) * self.B])
        idx = np.stack(rows)
        return self.seqs[idx], self.weights[idx]


# ----------------------------------------------------------------------------- progress, best, checkpoints


def _fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass
class _Best:
    """Lowest validation loss so far, its parameters and step, evaluations since."""

    params: Any
    val: float = math.inf
    step: int = 0
    bad: int = 0

    def to_dict(self) -> dict:
        return {"best_val": None if not math.isfinite(self.val) else self.val, "best_step": self.step, "bad": self.bad}


def _settings(model, trainable, config: FitConfig, data: _Data, key, B: int, chunk: int) -> dict:
    """What a checkpoint must share with the run resuming it. A user's optax object is recorded
    by its type only: its repr holds function addresses that differ between processes."""
    opt = config.optimization
    name = opt.optimizer if isinstance(opt.optimizer, str) else f"optax:{type(opt.optimizer).__name__}"
    params = eqx.filter(trainable, eqx.is_inexact_array)
    reg, stop = config.regularization, config.stopping
    return dict(
        L=int(trainable.L),
        q=int(trainable.q),
        model=type(model).__name__,
        optimizer=name,
        learning_rate=opt.learning_rate,
        batch_size=B,
        loss=opt.loss,
        gaps=opt.gaps,
        couplings=opt.couplings,
        l2=reg.l2,
        l2_fields=reg.l2_fields,
        validation_fraction=float(config.validation_fraction),
        eval_every=chunk,
        tol=stop.tol,
        ftol=stop.ftol,
        data=data.fingerprint,
        key=_fingerprint(jax.random.key_data(key)),
        params=_fingerprint(*jax.tree_util.tree_leaves(params)),
    )


class _Checkpointer:
    """Saves (state, best parameters) with the history after each chunk; resumes from it."""

    def __init__(self, config: FitConfig, settings: dict):
        path = config.checkpointing.path
        self.path = None if path is None else Path(path)
        self.resume, self.settings = config.checkpointing.resume, settings

    def load(self, state: FitState, best: _Best, mesh):
        """(state, best, history) from the checkpoint, or None when there is none to resume."""
        if not (self.resume and self.path.exists()):
            return None
        tree, meta = load_checkpoint(self.path, (state, best.params))
        stored = meta.get("settings", {})
        if stored != self.settings:
            diff = sorted(k for k in self.settings if stored.get(k) != self.settings[k])
            raise ValueError(
                f"checkpoint {self.path} was written by a run with different {', '.join(diff)}; "
                "resume needs the same model, data, key and settings"
            )
        state, best_params = engine.place(tree, mesh)
        p = meta["progress"]
        val = math.inf if p["best_val"] is None else p["best_val"]
        return state, _Best(best_params, val, int(p["best_step"]), int(p["bad"])), History.from_dict(meta["history"])

    def save(self, state: FitState, best: _Best, history: History) -> None:
        if self.path is None:
            return
        meta = {
            "settings": self.settings,
            "history": history.to_dict(),
            "progress": {"step": int(state.step), **best.to_dict()},
        }
        save_checkpoint(self.path, (state, best.params), meta)


def _length(config: FitConfig, linesearch: bool, per_epoch: int) -> int:
    stop = config.stopping
    if stop.n_steps is not None:
        return stop.n_steps
    if stop.n_epochs is not None:
        return stop.n_epochs * per_epoch
    return engine.DEFAULT_LBFGS_STEPS if linesearch else engine.DEFAULT_EPOCHS * per_epoch


def _record(
    history: History, best: _Best, state: FitState, n_done: int, values, terms, val, test, per_epoch: int, stop
) -> None:
    """Append one chunk to the history and update the best parameters and the stop flags."""
    values, terms = np.asarray(values)[:n_done], np.asarray(terms)[:n_done]
    step = int(state.step)
    history._append(step, step / per_epoch, float(np.mean(terms)), val, test, float(values[-1]), values)
    if math.isfinite(val):
        if val < best.val:
            best.params, best.val, best.step, best.bad = state.params, val, step, 0
        else:
            best.bad += 1
            history.stopped_early = stop.patience is not None and best.bad >= stop.patience
        history.reached_target = stop.target_loss is not None and val <= stop.target_loss
    history.converged = bool(state.done)


def _postfix(history: History) -> str:
    text = f"train {history.train_loss[-1]:.4f}"
    for name, v in (("val", history.val_loss[-1]), ("test", history.test_loss[-1])):
        text += "" if math.isnan(v) else f" {name} {v:.4f}"
    return text


# ----------------------------------------------------------------------------- fit


def fit(
    model: Any,
    seqs: Int[Array, "M L"],
    *,
    key: PRNGKeyArray,
    weights: Float[Array, " M"] | None = None,
    config: FitConfig | None = None,
    validation_data: tuple | None = None,
    test_data: tuple | None = None,
    progress: bool | None = None,
    mesh: jax.sharding.Mesh | None = None,
    max_memory: Any = None,
    **options: Any,
) -> tuple[Any, History]:
    r"""Train `model` by masked-language modelling (= pseudo-likelihood) with L2 regularisation.

    Minimises $\mathrm{MLM}(\theta) + R(\theta)/L$ with $R = \frac{l2}{2}\sum_{i\ne j}\|J_{ij}\|_F^2
    + \text{l2\_fields}\sum_i\|h_i\|^2$ (plmDCA's lambda_J and lambda_h; see `jaxpotts.losses`).

    Args:
        model: `FactoredAttention`, `Transformer`, `PottsModel` (trained as L conditionals, diagonal
            blocks held at zero), or any equinox module with `.L`, `.q`, `__call__(s) -> logits[L, q]`.
        seqs: training sequences (M, L), colours 0..q-1. weights: sequence weights (M,) or None.
        key: PRNG key for the validation split, minibatch order and stochastic masking.
        config: a `jaxpotts.engine.FitConfig` (default: all defaults); `**options` override it.
        validation_data: an explicit `(seqs, weights_or_None)` held-out set (or use the option
            `validation_fraction`).
        test_data: `(seqs, weights_or_None)` whose loss is recorded at every evaluation
            (`History.test_loss`, e.g. for learning curves); it never influences training.
        progress: progress bar (None: only when stderr is a terminal; False: silent).
        mesh: split every loss evaluation over the devices of this mesh (`jaxpotts.sharding.data_mesh()`,
            one axis named "data"): data parallelism with replicated parameters; the result equals
            a one-device fit up to floating-point rounding. None: one device.
        max_memory: memory budget of the up-front check (`jaxpotts.memory.check_memory`): None =
            the available memory, a number of bytes or a size such as "8GB", or "unlimited".
        **options: the flat names of the config (`FitConfig.from_options`):
            optimizer ("adam" default, "sgd", "lbfgs" or an optax transformation), learning_rate
            (adam/sgd, default 1e-2), batch_size (default: full batch), loss ("mlm" or
            "stochastic"), gaps ("state" or "missing": gaps as missing data), couplings (a
            `PottsModel`: "asymmetric" L conditionals, or "symmetric" one coupling per pair as
            plmc), l2 and l2_fields ($\lambda_J$, $\lambda_h$), n_steps or n_epochs
            (default: 500 steps for L-BFGS, else 100 epochs), tol and ftol (line-search stops),
            patience, target_loss, restore_best, eval_every (steps per compiled chunk, default
            one epoch or 25 full-batch steps), validation_fraction, checkpoint_path, resume
            (continue from the checkpoint if it exists; same data, key and settings required,
            the length and patience may grow; the result equals an uninterrupted run).

    Returns:
        (trained model of the same type, `History`).
    """
    t_start = time.perf_counter()
    config = (config or FitConfig()).replace(**options)
    engine.check_mesh(mesh)
    net, unwrap = engine.trainable(model, config.optimization.couplings)
    dtype = jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_inexact_array))[0].dtype
    k_split, k_batch, k_mask = jax.random.split(key, 3)
    data = _prepare_data(
        int(net.L),
        int(net.q),
        dtype,
        seqs,
        weights,
        validation_data,
        test_data,
        float(config.validation_fraction),
        k_split,
    )
    L, q, M = int(net.L), int(net.q), data.seqs.shape[0]
    check_memory(
        fit_estimate(
            L,
            q,
            M,
            model=net,
            optimizer=config.optimization.optimizer,
            batch_size=config.optimization.batch_size,
            n_devices=getattr(mesh, "size", 1),
        ),
        f"fit of {type(model).__name__} (L={L}, q={q}, M={M})",
        max_memory,
    )
    problem, state = engine.init(net, data.seqs, data.weights, config, mesh)
    M = data.seqs.shape[0]
    B = M if config.optimization.batch_size is None else min(config.optimization.batch_size, M)
    chunk = config.stopping.eval_every or (25 if problem.full_batch else -(-M // B))
    batches = _Batches(k_batch, data.seqs, data.weights, B, chunk)
    total = _length(config, problem.linesearch, batches.per_epoch)
    val, test = _chunked(data.validation), _chunked(data.test)
    if config.stopping.target_loss is not None and val is None:
        raise ValueError("target_loss needs validation data (validation_fraction or validation_data)")
    ckpt = _Checkpointer(config, _settings(model, net, config, data, key, B, chunk))
    best, history = _Best(state.params), History.empty()
    resumed = ckpt.load(state, best, mesh)
    if resumed is not None:
        state, best, history = resumed
    loop = _Loop(problem, batches, total, val, test, config.stopping, ckpt, k_mask)
    # _drive gets the only reference to the starting state, so it is freed after the first chunk
    # (an L-BFGS state holds m parameter-sized vectors: 2.9 GB for 3n2a).
    start = [state]
    del state
    state, best, history = _drive(loop, start, best, history, f"fit {type(model).__name__}", progress)
    params = _finish(state, best, history, val is not None and config.stopping.restore_best)
    history.wall_time = time.perf_counter() - t_start
    ckpt.save(state, best, history)
    # A fit over a mesh leaves the parameters split over its devices; hand back plain arrays.
    params = params if mesh is None else to_one_device(params)
    return unwrap(eqx.combine(params, problem.static)), history


@dataclasses.dataclass(frozen=True)
class _Loop:
    """What stays fixed while `_drive` runs the chunks of one fit."""

    problem: engine.Problem
    batches: _Batches
    total: int
    val: list | None
    test: list | None
    stop: engine.Stopping
    ckpt: _Checkpointer
    key: PRNGKeyArray


def _drive(loop: _Loop, start: list[FitState], best: _Best, history: History, desc: str, progress):
    """The host loop over compiled chunks: evaluate, record, stop, save. `start` holds the state
    to begin from, which `_drive` takes out: the caller keeps no reference to it."""
    problem, batches, total = loop.problem, loop.batches, loop.total
    state = start.pop()
    with progress_bar(total, desc, progress, unit="step") as bar:
        bar.update(min(int(state.step), total))
        while int(state.step) < total and not (history.stopped_early or history.reached_target or bool(state.done)):
            step = int(state.step)
            chunk = None if problem.full_batch else batches.chunk_from(step)
            n_active = jnp.asarray(min(batches.chunk, total - step), jnp.int32)
            state, n_done, values, terms = engine.advance(problem, state, chunk, n_active, loop.key, batches.chunk)
            v = _evaluate(state.params, problem.static, loop.val, problem.gaps)
            t = _evaluate(state.params, problem.static, loop.test, problem.gaps)
            _record(history, best, state, int(n_done), values, terms, v, t, batches.per_epoch, loop.stop)
            bar.update(int(n_done))
            bar.set_postfix_str(_postfix(history))
            loop.ckpt.save(state, best, history)
    return state, best, history


def _finish(state: FitState, best: _Best, history: History, use_best: bool):
    """The parameters to return, and the history's final fields."""
    history.converged = bool(state.done)
    if use_best and math.isfinite(best.val):
        history.best_step, history.best_val_loss = best.step, best.val
        return best.params
    history.best_step = int(state.step)
    history.best_val_loss = best.val if math.isfinite(best.val) else math.nan
    return state.params


# ----------------------------------------------------------------------------- plmDCA

_PROFILE_PSEUDOCOUNT = 0.1


def _profile_fields(seqs, q: int, weights, dtype, gap: int | None = None) -> Float[Array, "L q"]:
    """Centred log profile. With `gap` (gaps as missing data) over the other q - 1 colours, with
    frequencies among non-gap residues (plmc ``-g``), and zero at the gap: the data term does not
    depend on the gap's parameters, so they start and stay at zero."""
    from .statistics import site_frequencies

    f = np.asarray(site_frequencies(seqs, q, weights), np.float64)
    keep = np.ones(q, bool) if gap is None else np.arange(q) != gap
    if gap is not None:
        f = f[:, keep]
        f = f / np.maximum(f.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    n = int(keep.sum())
    h = np.log((1.0 - _PROFILE_PSEUDOCOUNT) * f + _PROFILE_PSEUDOCOUNT / n)
    out = np.zeros((f.shape[0], q))
    out[:, keep] = h - h.mean(axis=1, keepdims=True)
    return jnp.asarray(out, dtype)


def fit_plm(
    seqs: Int[Array, "M L"],
    *,
    q: int,
    key: PRNGKeyArray | None = None,
    weights: Float[Array, " M"] | None = None,
    dtype=None,
    init: str | None = None,
    **options: Any,
) -> tuple[PottsModel, History]:
    r"""Asymmetric plmDCA: a dense `PottsModel` fitted by pseudo-likelihood.

    All L conditionals $p(s_i \mid s_{-i}) = \mathrm{softmax}_a(h_i(a) + \sum_{j\ne i} J_{ij}(a, s_j))$
    are fitted in parallel (their objectives are independent, so one joint minimisation of
    $\mathrm{PL} + \frac{l2}{2}\sum_{i\ne j}\|J_{ij}\|^2 + \text{l2\_fields}\,\|h\|^2$ is L
    plmDCA site problems at once). The defaults are `jaxpotts.defaults.PLM` (`plmdca_settings`:
    $\lambda_J = \max(0.01, 0.01 (q-1)(L-1)/M_\mathrm{eff})$ with $M_\mathrm{eff}$ the sum of
    the weights, $\lambda_h = 0.01$, full-batch L-BFGS with an objective-change stop), from zero
    couplings and (``init="profile"``) the fields of the independent-site model,
    $h_i(a) = \log \tilde f_i(a)$ with $\tilde f_i = 0.9 f_i + 0.1/q$ the weighted frequencies
    mixed with a uniform pseudocount (centred), or zero fields (``init="zero"``). The objective is
    convex, so the start changes only how many iterations are needed (about 15% fewer on PF00014).

    ``gaps="missing"`` fits plmc's ``-g`` objective (gaps as missing data, `jaxpotts.losses`):
    the profile is then over the q - 1 non-gap colours (frequencies among residues) and the gap's
    fields and couplings stay exactly zero, so the returned model is the (q - 1)-state model
    embedded in q colours.

    The result has non-symmetric couplings (L conditionals); symmetrise
    ($\frac12[J_{ij}(a,b) + J_{ji}(b,a)]$) for a joint model. ``couplings="symmetric"`` fits
    instead one coupling per pair ($J_{ji} = J_{ij}^\top$ inside the objective, plmc's and
    CCMpred's symmetric pseudo-likelihood, `jaxpotts.engine.SymmetricConditionals`): the
    conditionals are then coupled and the result is exactly symmetric; the penalty
    $\frac{l2}{2}\sum_{i\ne j}\|J_{ij}\|^2 = l2\sum_{i<j}\|J_{ij}\|^2$ is plmc's $\lambda_e
    \sum_{i<j}\|e_{ij}\|^2$ per effective sequence. `**options` are `jaxpotts.fit`'s
    (they override the defaults; `key` defaults to PRNGKey(0)).
    """
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 2:
        raise ValueError(f"q must be an integer >= 2, got {q!r}")
    arr = jnp.asarray(seqs)
    if arr.ndim != 2:
        raise ValueError(f"seqs must have shape (M, L), got {tuple(arr.shape)}")
    L = arr.shape[1]
    if L < 2:
        raise ValueError(f"sequences need L >= 2 sites, got L={L}")
    run_args = {k: options.pop(k) for k in _RUN_ARGS if k in options}
    if weights is not None:
        losses.check_weights(weights, arr.shape[0])  # before the L2 rule reads their sum
    m_eff = float(arr.shape[0] if weights is None else np.sum(np.asarray(weights, dtype=np.float64)))
    if init is not None:
        options["init"] = init
    settings = plmdca_settings(L, q, m_eff, **options)
    init = settings.pop("init")
    dtype = jnp.result_type(float) if dtype is None else dtype
    check_memory(
        fit_estimate(
            L,
            q,
            arr.shape[0],
            kind="plm",
            optimizer=settings["optimizer"],
            batch_size=settings.get("batch_size"),
            dtype=dtype,
            n_devices=getattr(run_args.get("mesh"), "size", 1),
        ),
        f"plmDCA fit (L={L}, q={q}, M={arr.shape[0]})",
        run_args.get("max_memory"),
    )
    if init not in ("profile", "zero"):
        raise ValueError(f"init must be 'profile' or 'zero', got {init!r}")
    gap = losses.gap_colour(settings.get("gaps", "state"))
    h0 = jnp.zeros((L, q), dtype) if init == "zero" else _profile_fields(seqs, q, weights, dtype, gap)
    start = PottsModel(h0, jnp.zeros((L, L, q, q), dtype))
    key = jax.random.PRNGKey(0) if key is None else key
    return fit(start, seqs, key=key, weights=weights, **run_args, **settings)


def plmdca_settings(L: int, q: int, m_eff: float, **options: Any) -> dict:
    r"""`fit_plm`'s settings for an alignment of L sites, q colours and $M_\mathrm{eff}$: the
    defaults `jaxpotts.defaults.PLM` with `options` applied and the L2 rule resolved.

    ``l2="auto"`` (the default) becomes
    $\lambda_J = \max\bigl(0.01,\ 0.01\,(q-1)(L-1)/M_\mathrm{eff}\bigr)$ (`jaxpotts.losses.l2_rule`
    with ``l2_floor`` and ``l2_factor``): plmDCA's constant for deep alignments, the C tools'
    prior of fixed weight (CCMpred, plmc, GREMLIN) when $M_\mathrm{eff} < (q-1)(L-1)$, where
    it is the stronger of the two; the panel that chose it is in benchmarks/README.md. A number
    given as ``l2`` is used as it is. The returned dict has ``init`` and the fit options of
    `jaxpotts.fit`.
    """
    settings = defaults.PLM.settings(**options)
    factor, floor = settings.pop("l2_factor"), settings.pop("l2_floor")
    if isinstance(settings["l2"], str):
        if settings["l2"] != "auto":
            raise ValueError(f"l2 must be a number >= 0 or 'auto', got {settings['l2']!r}")
        settings["l2"] = losses.l2_rule(L, q, m_eff, factor=factor, floor=floor)
    return settings


# Arguments of `fit` that are not fit options (not in a defaults table).
_RUN_ARGS = ("config", "validation_data", "test_data", "progress", "mesh", "max_memory")

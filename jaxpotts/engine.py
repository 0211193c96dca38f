r"""The fit engine: small immutable configurations, a pure `init`, a jitted `step` and `advance`.

Every fitting method of the package (plmDCA, factored attention by MLM, and the ones to come)
minimises, in per-site units,

$$\frac{F(\theta)}{L} = \frac{\sum_{m\in b} w_m \ell_m(\theta)}{L\,B\,\bar w} + \frac{R(\theta)}{L},
\qquad R(\theta) = \frac{\lambda_J}{2}\sum_{i\ne j}\|J_{ij}\|_F^2 + \lambda_h\sum_i\|h_i\|^2 ,$$

with $\ell_m$ the negative log pseudo-likelihood of sequence m (`loss="mlm"`, every site masked
in turn) or of one random site times L (`loss="stochastic"`), b a batch of B sequences and
$\bar w$ the mean training weight (so a full batch gives the weighted mean exactly), and
$\lambda_J$ = `l2`, $\lambda_h$ = `l2_fields` in the package's one L2 convention
(`jaxpotts.losses.l2_penalty`, docs/conventions.md).

The engine is three pure pieces, in the style of optax and optimistix:

* configuration: `Optimization`, `Regularization`, `Stopping`, `Checkpointing`, gathered in
  `FitConfig` (frozen dataclasses, validated when built; `FitConfig.from_options(**flat)` maps
  the flat keyword names of `jaxpotts.fit`);
* `init(model, seqs, weights, config, mesh=None) -> (Problem, FitState)`: the trainable
  parameters, the optimiser state and the data a step needs;
* `step(problem, state, batch, key) -> (FitState, StepInfo)`: one optimiser step, pure and
  jittable; `advance(problem, state, batches, n_active, key, chunk)` applies up to `n_active` steps inside
  one compiled `lax.while_loop` that stops as soon as the state is done (converged or
  non-finite), so the host sees a chunk of steps at a time.

The driver that adds validation, early stopping, progress, checkpoints and the history around
`advance` is `jaxpotts.training.fit`; a new method is a model (or a wrapper module) and a defaults
entry (`jaxpotts.defaults`), not new loop code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from . import losses
from ._dense_pl import coupling_matrix
from ._validation import check_count, check_nonnegative
from .optim import lbfgs
from .potts import FactoredPotts, PottsModel
from .sharding import DATA_AXIS, replicate, sum_over_rows

__all__ = [
    "Optimization",
    "Regularization",
    "Stopping",
    "Checkpointing",
    "FitConfig",
    "Problem",
    "FitState",
    "StepInfo",
    "init",
    "step",
    "advance",
    "DenseConditionals",
    "SymmetricConditionals",
    "trainable",
]

LOSSES = ("mlm", "stochastic")
#: Coupling parametrisations of dense (plmDCA) fits: L independent conditionals with their own
#: J_ij and J_ji, or one shared coupling per pair (J_ji = J_ij^T inside the objective).
COUPLINGS = ("asymmetric", "symmetric")
OPTIMIZERS = ("adam", "sgd", "lbfgs")
FTOL_WINDOW = 5  # L-BFGS steps over which the relative objective change is measured
DEFAULT_LEARNING_RATE = 1e-2
#: Length of a fit given neither n_steps nor n_epochs: 500 L-BFGS iterations (line-search
#: optimisers), else 100 epochs.
DEFAULT_LBFGS_STEPS = 500
DEFAULT_EPOCHS = 100


# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Optimization:
    """How parameters move.

    Attributes:
        optimizer: "adam", "sgd", "lbfgs" (`jaxpotts.optim.lbfgs`: full batch, deterministic
            loss) or any optax `GradientTransformation` (line-search transformations receive
            value, grad and value_fn).
        learning_rate: for "adam"/"sgd" (default 1e-2); not for "lbfgs" or an optax object.
        batch_size: sequences per step (None: all, full batch).
        loss: "mlm" (every site masked in turn) or "stochastic" (one random site per sequence).
        gaps: "state" (the gap is a colour like any other) or "missing" (gaps as missing data,
            plmc's ``-g``: gapped sites and neighbours drop out, conditionals over the q - 1
            other colours; `jaxpotts.losses`). "missing" needs loss="mlm" and a model with
            Potts couplings.
        couplings: for a `PottsModel` (plmDCA), "asymmetric" (L independent conditionals,
            `DenseConditionals`; symmetrise afterwards) or "symmetric" (one coupling per pair,
            $J_{ji} = J_{ij}^\top$ inside the objective, as plmc and CCMpred;
            `SymmetricConditionals`).
    """

    optimizer: str | optax.GradientTransformation = "adam"
    learning_rate: float | None = None
    batch_size: int | None = None
    loss: str = "mlm"
    gaps: str = "state"
    couplings: str = "asymmetric"

    def __post_init__(self):
        if isinstance(self.optimizer, str):
            if self.optimizer not in OPTIMIZERS:
                raise ValueError(
                    f"optimizer must be one of {OPTIMIZERS} or an optax GradientTransformation, got {self.optimizer!r}"
                )
            if self.optimizer == "lbfgs" and self.learning_rate is not None:
                raise ValueError(
                    "optimizer='lbfgs' takes its steps from a line search; learning_rate does not apply "
                    "(pass an optax transformation such as optax.lbfgs(learning_rate=...) instead)"
                )
        elif isinstance(self.optimizer, optax.GradientTransformation):
            if self.learning_rate is not None:
                raise ValueError("learning_rate applies to named optimisers; an optax transformation carries its own")
        else:
            raise TypeError(
                f"optimizer must be a name or an optax GradientTransformation, got {type(self.optimizer).__name__}"
            )
        if self.learning_rate is not None:
            object.__setattr__(self, "learning_rate", check_nonnegative(self.learning_rate, "learning_rate"))
        object.__setattr__(self, "batch_size", check_count(self.batch_size, "batch_size", optional=True))
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        losses.gap_colour(self.gaps)
        if self.gaps == "missing" and self.loss != "mlm":
            raise ValueError("gaps='missing' is defined for loss='mlm' (every site in turn), got loss='stochastic'")
        if self.couplings not in COUPLINGS:
            raise ValueError(f"couplings must be one of {COUPLINGS}, got {self.couplings!r}")


@dataclasses.dataclass(frozen=True)
class Regularization:
    r"""$\lambda_J$ (`l2`) and $\lambda_h$ (`l2_fields`) of the package's L2 convention."""

    l2: float = 0.0
    l2_fields: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "l2", check_nonnegative(self.l2, "l2"))
        object.__setattr__(self, "l2_fields", check_nonnegative(self.l2_fields, "l2_fields"))


@dataclasses.dataclass(frozen=True)
class Stopping:
    """When a fit ends.

    Attributes:
        n_steps / n_epochs: length (at most one; neither: `DEFAULT_LBFGS_STEPS` steps for
            line-search optimisers, `DEFAULT_EPOCHS` epochs otherwise).
        tol: line searches stop when every gradient component is below this.
        ftol: line searches also stop when the objective fell by less than `ftol` times its
            value over the last `FTOL_WINDOW` steps (0: off).
        patience: stop after this many evaluations without a lower validation loss.
        target_loss: stop once the validation loss is at or below this.
        restore_best: with validation, return the parameters of the lowest validation loss.
        eval_every: steps between evaluations (one compiled chunk; default one epoch, 25 steps
            for a full batch).
    """

    n_steps: int | None = None
    n_epochs: int | None = None
    tol: float = 1e-6
    ftol: float = 0.0
    patience: int | None = None
    target_loss: float | None = None
    restore_best: bool = True
    eval_every: int | None = None

    def __post_init__(self):
        for name in ("n_steps", "n_epochs", "patience", "eval_every"):
            object.__setattr__(self, name, check_count(getattr(self, name), name, optional=True))
        if self.n_steps is not None and self.n_epochs is not None:
            raise ValueError("give at most one of n_steps and n_epochs")
        object.__setattr__(self, "tol", check_nonnegative(self.tol, "tol"))
        object.__setattr__(self, "ftol", check_nonnegative(self.ftol, "ftol"))
        t = self.target_loss
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
            raise ValueError(f"target_loss must be a finite number or None, got {t!r}")


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """`path`: save the training state there after every chunk and at the end; `resume`:
    continue from it when it exists (same data, key and settings; the result equals an
    uninterrupted run)."""

    path: Any = None
    resume: bool = False

    def __post_init__(self):
        if self.resume and self.path is None:
            raise ValueError("resume=True needs a checkpoint_path")


#: Flat keyword names of `jaxpotts.fit` -> (section, field).
_FLAT = {
    "optimizer": ("optimization", "optimizer"),
    "learning_rate": ("optimization", "learning_rate"),
    "batch_size": ("optimization", "batch_size"),
    "loss": ("optimization", "loss"),
    "gaps": ("optimization", "gaps"),
    "couplings": ("optimization", "couplings"),
    "l2": ("regularization", "l2"),
    "l2_fields": ("regularization", "l2_fields"),
    "n_steps": ("stopping", "n_steps"),
    "n_epochs": ("stopping", "n_epochs"),
    "tol": ("stopping", "tol"),
    "ftol": ("stopping", "ftol"),
    "patience": ("stopping", "patience"),
    "target_loss": ("stopping", "target_loss"),
    "restore_best": ("stopping", "restore_best"),
    "eval_every": ("stopping", "eval_every"),
    "checkpoint_path": ("checkpointing", "path"),
    "resume": ("checkpointing", "resume"),
    "validation_fraction": (None, "validation_fraction"),
}


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """All settings of a fit, one frozen dataclass per concern. `validation_fraction` of the
    sequences (chosen with the fit's key) is held out for validation."""

    optimization: Optimization = Optimization()
    regularization: Regularization = Regularization()
    stopping: Stopping = Stopping()
    checkpointing: Checkpointing = Checkpointing()
    validation_fraction: float = 0.0

    def __post_init__(self):
        v = self.validation_fraction
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {v!r}")

    @classmethod
    def from_options(cls, **options: Any) -> FitConfig:
        """A config from the flat keyword names of `jaxpotts.fit` (``l2=``, ``n_steps=``, ...)."""
        return cls().replace(**options)

    def replace(self, **options: Any) -> FitConfig:
        """A copy with some flat options changed (``config.replace(l2=0.1, n_steps=50)``)."""
        unknown = sorted(set(options) - set(_FLAT))
        if unknown:
            raise TypeError(f"unknown fit option(s): {', '.join(unknown)}; known: {', '.join(sorted(_FLAT))}")
        sections: dict[str, dict] = {}
        top = {}
        for name, value in options.items():
            section, field = _FLAT[name]
            if section is None:
                top[field] = value
            else:
                sections.setdefault(section, {})[field] = value
        changed = {s: dataclasses.replace(getattr(self, s), **kw) for s, kw in sections.items()}
        return dataclasses.replace(self, **changed, **top)

    def options(self) -> dict:
        """The flat keyword form (inverse of `from_options`)."""
        return {name: getattr(self if s is None else getattr(self, s), f) for name, (s, f) in _FLAT.items()}


# ----------------------------------------------------------------------------- trainable models


@jax.jit  # one compiled program instead of five small ones when called outside a trace
def _off_diagonal(couplings: Float[Array, "L L q q"]) -> Float[Array, "L L q q"]:
    """The couplings with the diagonal blocks J_ii set to zero."""
    off = ~jnp.eye(couplings.shape[0], dtype=bool)
    return jnp.where(off[:, :, None, None], couplings, 0.0)


class DenseConditionals(eqx.Module):
    r"""A trainable `PottsModel`: conditionals $h_i(a) + \sum_{j\ne i} J_{ij}(a, s_j)$ with the
    diagonal blocks masked in the forward pass, so no gradient ever reaches them."""

    fields: Float[Array, "L q"]
    couplings: Float[Array, "L L q q"]

    @property
    def L(self) -> int:
        return self.fields.shape[0]

    @property
    def q(self) -> int:
        return self.fields.shape[1]

    def _masked(self) -> Float[Array, "L L q q"]:
        return _off_diagonal(self.couplings)

    def __call__(self, s: Int[Array, " L"]) -> Float[Array, "L q"]:
        x = jax.nn.one_hot(s, self.q, dtype=self.fields.dtype)
        return self.fields + jnp.einsum("ijab,jb->ia", self._masked(), x)

    def site_logits(self, s, i):
        x = jax.nn.one_hot(s, self.q, dtype=self.fields.dtype)
        row = jnp.where((jnp.arange(self.L) != i)[:, None, None], self.couplings[i], 0.0)
        return self.fields[i] + jnp.einsum("jab,jb->a", row, x)

    def dense_parts(self) -> tuple[Float[Array, "L q"], Float[Array, "Lq Lq"]]:
        """Fields and coupling matrix for the fused pseudo-likelihood kernel (`jaxpotts._dense_pl`)."""
        return self.fields, coupling_matrix(self._masked())

    def coupling_norm2(self) -> Scalar:
        return jnp.sum(self._masked() ** 2)

    def field_norm2(self) -> Scalar:
        return jnp.sum(self.fields**2)

    def to_potts(self) -> PottsModel:
        return PottsModel(self.fields, self._masked())


class SymmetricConditionals(DenseConditionals):
    r"""A trainable `PottsModel` with ONE coupling per pair (symmetric pseudo-likelihood, as plmc
    and CCMpred): the parameters $W$ (L, L, q, q) enter only through

    $$J_{ij}(a,b) = \tfrac12\,[W_{ij}(a,b) + W_{ji}(b,a)] \quad (i \ne j), \qquad J_{ii} = 0,$$

    so $J_{ji} = J_{ij}^\top$ exactly, and the conditionals, the fused kernel (`dense_parts`),
    the penalty (`coupling_norm2`) and `to_potts` all see this J. The gradient of the PL with
    respect to the shared coupling of pair i<j (moving $J_{ij}$ by E and $J_{ji}$ by
    $E^\top$) is $G_{ij} + G_{ji}^\top$, with G the gradient of the asymmetric objective (L
    independent conditionals) at the same J; with respect to $W_{ij}$ it is half of that.

    Penalty: `coupling_norm2` is $\sum_{i \ne j}\|J_{ij}\|^2 = 2\sum_{i<j}\|J_{ij}\|^2$, so the
    package's $\frac{\lambda_J}{2}\sum_{i\ne j}\|J_{ij}\|^2 = \lambda_J \sum_{i<j}\|J_{ij}\|^2$
    is plmc's coupling prior (src/inference.c, `PLMNegLogPosterior`: `fx += lambdaEij(i, j) *
    xEij(i, j, ai, aj)^2` over i < j, one stored $e_{ij}$ per pair with $e_{ji}(b,a) =
    e_{ij}(a,b)$) with $\lambda_J = \lambda_e / N_{\mathrm{eff}}$ (plmc sums the weighted
    objective over sequences, the package takes the weighted mean); likewise $\lambda_h =
    \lambda_h^{\mathrm{plmc}} / N_{\mathrm{eff}}$ for $\lambda_h\sum_i\|h_i\|^2$.
    """

    def _masked(self) -> Float[Array, "L L q q"]:
        W = self.couplings
        return _off_diagonal(0.5 * (W + W.transpose(1, 0, 3, 2)))

    def site_logits(self, s, i):
        x = jax.nn.one_hot(s, self.q, dtype=self.fields.dtype)
        W = self.couplings
        both = 0.5 * (W[i] + W[:, i].transpose(0, 2, 1))
        row = jnp.where((jnp.arange(self.L) != i)[:, None, None], both, 0.0)
        return self.fields[i] + jnp.einsum("jab,jb->a", row, x)


def trainable(model: Any, couplings: str = "asymmetric") -> tuple[Any, Any]:
    """The trainable form of `model` and the function turning a trained one back. A `PottsModel`
    trains as `DenseConditionals` (``couplings="asymmetric"``) or `SymmetricConditionals`
    (``"symmetric"``, started from its couplings $W$ = `model.couplings`: the effective start is
    their symmetric part); other models only with the default."""
    if couplings not in COUPLINGS:
        raise ValueError(f"couplings must be one of {COUPLINGS}, got {couplings!r}")
    if isinstance(model, PottsModel):
        cls = SymmetricConditionals if couplings == "symmetric" else DenseConditionals
        return cls(model.fields, model.couplings), lambda m: m.to_potts()
    if couplings != "asymmetric":
        raise ValueError(
            f"couplings={couplings!r} applies to dense Potts fits (PottsModel, plmDCA); "
            f"{type(model).__name__} has its own parametrisation"
        )
    if isinstance(model, FactoredPotts):
        raise TypeError(
            "fit does not train FactoredPotts directly; use FactoredAttention(L, q, 1, 1, softmax=False, "
            "fields=True, key=...), the same parametrisation J_ij U(a,b) (then .to_factored())"
        )
    for attr in ("L", "q"):
        if not hasattr(model, attr):
            raise TypeError(f"model {type(model).__name__} must expose .L and .q and map s[L] to logits[L, q]")
    return model, lambda m: m


# ----------------------------------------------------------------------------- optimisers


@functools.cache
def named_optimizer(name: str, mesh: jax.sharding.Mesh | None = None) -> optax.GradientTransformation:
    """The transformation of a named optimiser. Its learning rate is a hyper-parameter in the
    state (`optax.inject_hyperparams`), so there is one transformation object per (name, mesh)
    and every fit with that optimiser reuses one compiled step."""
    if name == "lbfgs":
        return lbfgs(mesh=mesh)
    make = {"adam": optax.adam, "sgd": optax.sgd}[name]
    return optax.inject_hyperparams(make)(learning_rate=DEFAULT_LEARNING_RATE)


def _tree_get(state, name):
    getter = getattr(getattr(optax, "tree", None), "get", None) or optax.tree_utils.tree_get
    return getter(state, name, None)


def is_linesearch(opt: optax.GradientTransformation, params) -> bool:
    """Whether the optimiser keeps the objective value in its state (L-BFGS / line searches)."""
    return _tree_get(jax.eval_shape(opt.init, params), "value") is not None


def _strong(tree):
    """Arrays without weak types: optax initialises some counters as weakly typed scalars that
    its updates return strongly typed, which would retrace the loop once."""

    def fix(x):
        if isinstance(x, (jax.Array, np.ndarray, np.generic, bool, int, float)) and not isinstance(x, jax.core.Tracer):
            x = jnp.asarray(x)
            return jnp.asarray(x, dtype=x.dtype)
        return x

    return jax.tree_util.tree_map(fix, tree)


def _init_opt_state(opt, params, learning_rate, dtype):
    state = _strong(opt.init(params))
    hyper = getattr(state, "hyperparams", None)
    if hyper is not None and "learning_rate" in hyper:
        lr = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
        hyper["learning_rate"] = jnp.asarray(lr, dtype)
    return state


# ----------------------------------------------------------------------------- problem and state


class Problem(eqx.Module):
    """What a step needs besides the state: the static model part, the optimiser and the data
    (the whole training set for a full batch; minibatches arrive with each call of `advance`)."""

    static: Any
    optimizer: Any = eqx.field(static=True)
    loss: str = eqx.field(static=True)
    gaps: str = eqx.field(static=True)
    linesearch: bool = eqx.field(static=True)
    full_batch: bool = eqx.field(static=True)
    L: int = eqx.field(static=True)
    mesh: Any = eqx.field(static=True)
    seqs: Int[Array, "M L"] | None
    weights: Float[Array, " M"] | None
    norm: Scalar  # B * mean weight: the divisor of a batch's weighted sum
    l2: Scalar
    l2_fields: Scalar
    tol: Scalar
    ftol: Scalar


class FitState(eqx.Module):
    """The evolving part: parameters, optimiser state, whether the fit is done, the objective
    of the last `FTOL_WINDOW` line-search steps and the number of steps taken."""

    params: Any
    opt_state: Any
    done: jax.Array
    recent: jax.Array
    step: jax.Array


class StepInfo(NamedTuple):
    """value: the minimised objective before the step; term: its data term."""

    value: Scalar
    term: Scalar


def init(
    model: Any,
    seqs: Int[np.ndarray, "M L"],
    weights: Float[np.ndarray, " M"],
    config: FitConfig,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[Problem, FitState]:
    """The problem and the initial state of a fit of a trainable `model` (see `trainable`) to
    training sequences with positive total weight. With a `mesh`, the state starts placed on it
    (whole on every device), where the compiled loop leaves it, so nothing recompiles."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    opt_cfg, stop, reg = config.optimization, config.stopping, config.regularization
    opt = named_optimizer(opt_cfg.optimizer, mesh) if isinstance(opt_cfg.optimizer, str) else opt_cfg.optimizer
    linesearch = is_linesearch(opt, params)
    M = seqs.shape[0]
    B = M if opt_cfg.batch_size is None else min(opt_cfg.batch_size, M)
    full_batch = B == M
    if linesearch and not full_batch:
        raise ValueError(
            "L-BFGS / line-search optimisers need the full batch (batch_size=None), "
            f"got batch_size={opt_cfg.batch_size}"
        )
    if linesearch and opt_cfg.loss != "mlm":
        raise ValueError("L-BFGS / line-search optimisers need the deterministic loss='mlm'")
    scalar = functools.partial(jnp.asarray, dtype=dtype)
    problem = Problem(
        static=static,
        optimizer=opt,
        loss=opt_cfg.loss,
        gaps=opt_cfg.gaps,
        linesearch=linesearch,
        full_batch=full_batch,
        L=int(model.L),
        mesh=mesh,
        seqs=jnp.asarray(seqs) if full_batch else None,
        weights=jnp.asarray(weights, dtype) if full_batch else None,
        norm=scalar(B * float(np.mean(weights))),
        l2=scalar(reg.l2),
        l2_fields=scalar(reg.l2_fields),
        tol=scalar(stop.tol),
        ftol=scalar(stop.ftol),
    )
    state = FitState(
        params=params,
        opt_state=_init_opt_state(opt, params, opt_cfg.learning_rate, dtype),
        done=jnp.asarray(False),
        recent=jnp.full((FTOL_WINDOW,), jnp.inf, dtype),
        step=jnp.zeros((), jnp.int32),
    )
    return problem, place(state, mesh)


def place(tree, mesh):
    """Loop state placed on `mesh` (whole on each device); state already there is kept."""
    return tree if mesh is None else replicate(tree, mesh, keep_placed=True)


def check_mesh(mesh) -> None:
    if mesh is None:
        return
    if not isinstance(mesh, jax.sharding.Mesh) or DATA_AXIS not in mesh.axis_names or len(mesh.axis_names) != 1:
        raise ValueError(
            f"mesh must be a one-axis jax.sharding.Mesh named {DATA_AXIS!r} "
            f"(jaxpotts.sharding.data_mesh()), got {mesh!r}"
        )


# ----------------------------------------------------------------------------- the objective


def _data_term(model, problem: Problem, seqs, weights, key) -> Scalar:
    if problem.loss == "mlm":
        total = (
            losses.weighted_pseudo_likelihood_sum(model, seqs, weights, mesh=problem.mesh, gaps=problem.gaps)
            / problem.L
        )
    else:
        sites = jax.random.randint(key, (seqs.shape[0],), 0, problem.L)
        params, static = eqx.partition(model, eqx.is_array)

        def shard_sum(params, s, w, i):
            per = losses.masked_site_nll(eqx.combine(params, static), s, i)
            return jnp.sum(w.astype(per.dtype) * per)

        total = sum_over_rows(shard_sum, problem.mesh)(params, seqs, weights, sites)
    return total / problem.norm


def _penalty(params, problem: Problem) -> Scalar:
    return losses.l2_penalty(eqx.combine(params, problem.static), problem.l2, problem.l2_fields) / problem.L


def objective(params, problem: Problem, seqs, weights, key) -> tuple[Scalar, Scalar]:
    """(objective, data term) of the parameters on one batch; see the module docstring."""
    term = _data_term(eqx.combine(params, problem.static), problem, seqs, weights, key)
    return term + _penalty(params, problem), term


def _finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(flag, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(flag, a, b), new, old)


# ----------------------------------------------------------------------------- step and advance


def _linesearch_update(problem: Problem, state: FitState, seqs, weights, key):
    """One line-search step. Done when the gradient is below tol, the search found no decrease
    (precision limit), or the objective fell by less than a relative ftol over the last
    `FTOL_WINDOW` steps."""

    def value_fn(p):
        return objective(p, problem, seqs, weights, key)[0]

    value, grad = optax.value_and_grad_from_state(value_fn)(state.params, state=state.opt_state)
    term = value - _penalty(state.params, problem)
    updates, opt_state = problem.optimizer.update(
        grad, state.opt_state, state.params, value=value, grad=grad, value_fn=value_fn
    )
    new_value = _tree_get(opt_state, "value")
    gmax = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree_util.tree_leaves(grad)]))
    no_decrease = ~(new_value < value)
    slot = state.step % FTOL_WINDOW
    stalled = (state.recent[slot] - new_value) <= problem.ftol * jnp.abs(new_value)
    recent = state.recent.at[slot].set(new_value)
    converged = (gmax <= problem.tol) | no_decrease | stalled
    return updates, opt_state, recent, no_decrease, converged, StepInfo(value, term)


def step(problem: Problem, state: FitState, batch: tuple | None, key: PRNGKeyArray) -> tuple[FitState, StepInfo]:
    """One optimiser step on `batch` = (seqs[B, L], weights[B]) (None: the full training set).

    A step whose parameters are non-finite, or a line-search step that found no decrease, is
    rejected (the parameters stay) and marks the state done. `key` draws the masked sites of
    the stochastic loss."""
    seqs, weights = (problem.seqs, problem.weights) if batch is None else batch
    if problem.linesearch:
        updates, opt_state, recent, reject, converged, info = _linesearch_update(problem, state, seqs, weights, key)
    else:
        (value, term), grad = jax.value_and_grad(objective, has_aux=True)(state.params, problem, seqs, weights, key)
        updates, opt_state = problem.optimizer.update(grad, state.opt_state, state.params)
        recent, reject, converged, info = state.recent, jnp.array(False), jnp.array(False), StepInfo(value, term)
    new_params = optax.apply_updates(state.params, updates)
    finite = _finite(new_params)
    params = _select(finite & ~reject, new_params, state.params)
    done = converged | ~finite
    return FitState(params, opt_state, done, recent, state.step + 1), info


@eqx.filter_jit
def advance(
    problem: Problem,
    state: FitState,
    batches: tuple | None,
    n_active: Int[Array, ""],
    key: PRNGKeyArray,
    chunk: int,
) -> tuple[FitState, Int[Array, ""], Float[Array, " chunk"], Float[Array, " chunk"]]:
    """Up to `n_active` (<= `chunk`, static) steps in one `lax.while_loop`, stopping early once
    the state is done. Minibatches arrive pre-gathered as ``batches = (seqs[chunk, B, L],
    weights[chunk, B])``, so the compiled loop does not depend on the training-set size; the
    masked sites of step t use ``fold_in(key, t)``. Returns the state, the number of steps
    taken and the objective and data term of each (NaN after the last)."""

    def body(carry):
        i, state, values, terms = carry
        batch = None if batches is None else jax.tree_util.tree_map(lambda x: x[i], batches)
        state, info = step(problem, state, batch, jax.random.fold_in(key, state.step))
        return i + 1, state, values.at[i].set(info.value), terms.at[i].set(info.term)

    def cond(carry):
        return (carry[0] < n_active) & ~carry[1].done

    dtype = problem.norm.dtype
    blank = jnp.full((chunk,), jnp.nan, dtype)
    n_done, state, values, terms = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state, blank, blank))
    return state, n_done, values, terms

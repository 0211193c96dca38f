r"""Boltzmann-machine learning (bmDCA): fit a Potts model so that its own samples reproduce the
one- and two-site statistics of the (weighted) data.

For $P(s) = e^{-E(s)}/Z$ with $E(s) = -\sum_i h_i(s_i) - \tfrac12\sum_{i \ne j} J_{ij}(s_i, s_j)$
(symmetric couplings, `jaxpotts.potts.energy`), the per-sequence negative log-likelihood of
data with weights $w_m$, $W = \sum_m w_m$,

$$\mathcal L(h, J) = \log Z + \frac1W \sum_m w_m E(s^m) + R(h, J),$$

has the gradient (model statistics minus data statistics)

$$\frac{\partial\mathcal L}{\partial h_i(a)} = p_i(a) - f_i(a) + 2\lambda_h h_i(a), \qquad
\frac{\partial\mathcal L}{\partial J_{ij}(a,b)} = \tfrac12\,[p_{ij}(a,b) - f_{ij}(a,b)] + \lambda_J J_{ij}(a,b)$$

for every ordered entry $i \ne j$ of the (L, L, q, q) array (each unordered pair appears twice,
hence the 1/2), with $R$ the package's one L2 convention (`jaxpotts.losses.l2_penalty`), $p$
the model's marginals and $f$ the data frequencies with pseudocount $\lambda$:
$f_i(a) \leftarrow (1-\lambda) f_i(a) + \lambda/q$, $f_{ij}(a,b) \leftarrow (1-\lambda) f_{ij}(a,b) + \lambda/q^2$.
At the optimum without L2 the model matches the data's moments, $p_i = f_i$, $p_{ij} = f_{ij}$
(moment matching, maximum entropy). For a `FactoredPotts` ($J_{ij} U(a,b)$) or a factored
attention layer (its joint `to_potts(symmetrize=True)`), the dense gradient is pulled back
through the map parameters -> (fields, couplings) by `jax.vjp`.

The model marginals come from `n_chains` persistent chains advanced by
`jaxpotts.sampling.sweep` (`sweeps` sweeps per update), read once after the sweeps. One update
(sweeps, statistics, optax update) is one jitted function; `chunk` updates run inside one
`lax.while_loop` on the device, the host seeing one chunk at a time (progress bar, history,
checkpoints, the stopping test).

Convergence: the Pearson correlation of the connected correlations
$C_{ij}(a,b) = f_{ij}(a,b) - f_i(a) f_j(b)$ ($i < j$, all colour pairs) of the model (averaged
over the updates of a chunk) and of the weighted data (no pseudocount). When it reaches the
target, `equilibration_check` freezes the model and runs the persistent chains and a fresh set
started from data sequences for `check_sweeps` sweeps: the fit stops only if the persistent
chains' energy trace has split R-hat < 1.1 and its mean agrees with the fresh chains' (within
three standard errors or 5% of the energies' spread), and if the Pearson of the frozen model's
statistics (averaged over the check's sweeps) still reaches the target. A check that fails
although the chains' statistics had reached the target means the model moves faster than its
chains mix (their statistics are those of a moving model, not of any frozen one): the fit then
backs off, multiplying the learning rate by `backoff_lr` and the sweeps per update by
`backoff_sweeps`, at most `max_backoffs` times (the steps are in ``history["backoffs"]``). docs/boltzmann.md
explains the default recipe (`jaxpotts.defaults.BOLTZMANN`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from . import defaults, diagnostics
from ._progress import progress_bar
from ._validation import check_count, check_sequences
from .engine import Optimization, Regularization, named_optimizer
from .losses import check_weights, l2_penalty
from .potts import FactoredPotts, PottsModel, energy, to_dense
from .sampling import sweep, sweeps
from .statistics import pair_frequencies, site_frequencies

__all__ = [
    "BoltzmannResult",
    "data_statistics",
    "likelihood_gradient",
    "equilibration_check",
    "frozen_model_pearson",
    "fit_boltzmann",
]

_EXTRA = (
    "n_chains",
    "sweeps",
    "pseudocount",
    "start",
    "target",
    "field_lr_factor",
    "decay",
    "chunk",
    "check_sweeps",
    "backoff_lr",
    "backoff_sweeps",
    "max_backoffs",
)


# ----------------------------------------------------------------------------- statistics


def _site_from_pairs(f2: Float[Array, "L L q q"]) -> Float[Array, "L q"]:
    idx = jnp.arange(f2.shape[0])
    return jnp.diagonal(f2[idx, idx], axis1=-2, axis2=-1)


def data_statistics(
    seqs: Int[Array, "M L"], q: int, weights: Float[Array, " M"] | None = None, *, pseudocount: float = 0.0
) -> tuple[Float[Array, "L q"], Float[Array, "L L q q"]]:
    r"""Weighted data frequencies with pseudocount $\lambda$ (`jaxpotts.statistics`):
    $(1-\lambda) f_i(a) + \lambda/q$ and, for $i \ne j$, $(1-\lambda) f_{ij}(a,b) + \lambda/q^2$;
    the diagonal blocks stay $f_{ii}(a,b) = f_i(a)\delta_{ab}$."""
    if not 0.0 <= pseudocount < 1.0:
        raise ValueError(f"pseudocount must be in [0, 1), got {pseudocount!r}")
    f2 = pair_frequencies(seqs, q, weights)
    f1 = (1.0 - pseudocount) * _site_from_pairs(f2) + pseudocount / q
    L = f1.shape[0]
    off = (1.0 - jnp.eye(L, dtype=f2.dtype))[:, :, None, None]
    diag = jnp.eye(L, dtype=f2.dtype)[:, :, None, None] * (f1[:, None, :, None] * jnp.eye(q, dtype=f2.dtype))
    return f1, off * ((1.0 - pseudocount) * f2 + pseudocount / q**2) + diag


def _connected(f1: Float[Array, "L q"], f2: Float[Array, "L L q q"]) -> np.ndarray:
    """C_ij(a,b) for i < j, flattened (numpy, float64)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    c = f2 - f1[:, None, :, None] * f1[None, :, None, :]
    iu, ju = np.triu_indices(f1.shape[0], 1)
    return c[iu, ju].ravel()


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")


# ----------------------------------------------------------------------------- models


def _joint(model: Any):
    """The joint Potts model that the chains sample."""
    if isinstance(model, (PottsModel, FactoredPotts)):
        return model
    return model.to_potts(symmetrize=True)


def _dense_parts(model: Any) -> tuple[Float[Array, "L q"], Float[Array, "L L q q"]]:
    dense = to_dense(_joint(model))
    return dense.fields, dense.couplings


def _independent_start(seqs, q: int, weights, pseudocount: float) -> PottsModel:
    r"""`jaxpotts.mutations.independent_model` with the pseudocount given as a fraction $\lambda$:
    its marginals are $(1-\lambda) f_i + \lambda/q$, i.e. $\alpha = \lambda W / (q (1-\lambda))$
    effective sequences per colour (a tiny $\alpha$ for $\lambda = 0$, to keep the fields finite)."""
    from .mutations import independent_model

    W = float(np.sum(np.asarray(weights, np.float64))) if weights is not None else float(np.shape(seqs)[0])
    alpha = pseudocount * W / (q * (1.0 - pseudocount)) if pseudocount > 0 else 1e-6
    model = independent_model(seqs, q, weights, pseudocount=alpha)
    dtype = jnp.result_type(float)
    return PottsModel(model.fields.astype(dtype), model.couplings.astype(dtype))


def likelihood_gradient(
    model: Any,
    model_stats: tuple[Float[Array, "L q"], Float[Array, "L L q q"]],
    data_stats: tuple[Float[Array, "L q"], Float[Array, "L L q q"]],
    l2: Any = 0.0,
    l2_fields: Any = 0.0,
) -> Any:
    r"""The gradient of the per-sequence negative log-likelihood plus `l2_penalty` with respect
    to the model's parameters, given model marginals $(p_i, p_{ij})$ and data frequencies
    $(f_i, f_{ij})$ (module docstring): $(p_i - f_i,\ \tfrac12 (p_{ij} - f_{ij})_{i \ne j})$
    pulled back through parameters -> (fields, couplings). Exact marginals
    (`jaxpotts.exact`) give the exact gradient; chain averages give its Monte Carlo estimate."""
    (p1, p2), (f1, f2) = model_stats, data_stats
    L = p1.shape[0]
    off = (1.0 - jnp.eye(L, dtype=p2.dtype))[:, :, None, None]
    params, static = eqx.partition(model, eqx.is_inexact_array)
    _, pull = jax.vjp(lambda p: _dense_parts(eqx.combine(p, static)), params)
    (grad,) = pull((p1 - f1, 0.5 * off * (p2 - f2)))
    penalty = eqx.filter_grad(lambda p: l2_penalty(eqx.combine(p, static), l2, l2_fields))(params)
    return jax.tree_util.tree_map(jnp.add, grad, penalty)


# ----------------------------------------------------------------------------- training step


class _Problem(eqx.Module):
    """Targets and static settings of one fit."""

    f1: Float[Array, "L q"]
    f2: Float[Array, "L L q q"]
    l2: Scalar
    l2_fields: Scalar
    learning_rate: Scalar
    field_lr_factor: Scalar
    decay: Scalar
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    sweeps: int = eqx.field(static=True)
    method: str = eqx.field(static=True)


class _State(eqx.Module):
    params: Any
    opt_state: Any
    chains: Int[Array, "n_chains L"]
    step: Int[Array, ""]


def _scale_fields(updates, factor):
    if getattr(updates, "fields", None) is None:
        return updates
    return eqx.tree_at(lambda u: u.fields, updates, updates.fields * factor)


def _update(problem: _Problem, state: _State, static, key: PRNGKeyArray):
    """One update: `sweeps` sweeps of the persistent chains, their statistics, the optax step."""
    model = eqx.combine(state.params, static)
    joint = _joint(model)
    k = jax.random.fold_in(key, state.step)

    # One `sweeps` call: the dense sweep's coupling layout is made once per update, not per sweep.
    chains = sweeps(joint, k, state.chains, problem.sweeps, method=problem.method)[0]
    p2 = pair_frequencies(chains, problem.f1.shape[1]).astype(problem.f2.dtype)
    p1 = _site_from_pairs(p2)
    grad = likelihood_gradient(model, (p1, p2), (problem.f1, problem.f2), problem.l2, problem.l2_fields)
    grad = eqx.filter(grad, eqx.is_inexact_array)
    lr = problem.learning_rate / (1.0 + state.step / problem.decay)
    opt_state = state.opt_state
    if hasattr(opt_state, "hyperparams"):
        opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr.astype(p2.dtype)})
    updates, opt_state = problem.optimizer.update(grad, opt_state, state.params)
    params = optax.apply_updates(state.params, _scale_fields(updates, problem.field_lr_factor))
    norm = optax.tree.norm(grad)
    return _State(params, opt_state, chains, state.step + 1), (p1, p2, norm)


@eqx.filter_jit
def _advance(problem: _Problem, state: _State, static, key: PRNGKeyArray, n_active: Int[Array, ""], chunk: int):
    """Up to `n_active` (<= `chunk`) updates in one `lax.while_loop`; returns the state, the
    number done, the model statistics summed over them and the gradient norm of each."""
    L, q = problem.f1.shape

    def body(carry):
        i, state, s1, s2, norms = carry
        state, (p1, p2, norm) = _update(problem, state, static, key)
        return i + 1, state, s1 + p1, s2 + p2, norms.at[i].set(norm)

    def cond(carry):
        return carry[0] < n_active

    dtype = problem.f2.dtype
    init = (
        jnp.zeros((), jnp.int32),
        state,
        jnp.zeros((L, q), dtype),
        jnp.zeros((L, L, q, q), dtype),
        jnp.full((chunk,), jnp.nan, dtype),
    )
    return jax.lax.while_loop(cond, body, init)


# ----------------------------------------------------------------------------- equilibration


@eqx.filter_jit
def _frozen_run(joint: Any, key: PRNGKeyArray, chains: Int[Array, "n L"], n_sweeps: int, thin: int, method: str):
    """`n_sweeps` sweeps at a fixed model: the energy of every chain after each sweep
    (n_chains, n_sweeps) and the pair frequencies averaged over every `thin`-th sweep."""
    L, q = joint.fields.shape
    energies = jax.vmap(lambda s: energy(joint, s))

    def body(carry, i):
        chains, f2 = carry
        chains = sweep(joint, jax.random.fold_in(key, i), chains, method=method)[0]
        f2 = jax.lax.cond((i + 1) % thin == 0, lambda: f2 + pair_frequencies(chains, q).astype(f2.dtype), lambda: f2)
        return (chains, f2), energies(chains)

    f2 = jnp.zeros((L, L, q, q), joint.fields.dtype)
    (chains, f2), trace = jax.lax.scan(body, (chains, f2), jnp.arange(n_sweeps))
    return chains, f2 / max(n_sweeps // thin, 1), trace.T


def equilibration_check(
    model: Any,
    chains: Int[Array, "n_chains L"],
    seqs: Int[Array, "M L"],
    weights: Float[Array, " M"] | None = None,
    *,
    key: PRNGKeyArray,
    n_sweeps: int = 100,
    method: str = "gibbs",
) -> dict:
    r"""Are `chains` samples of `model`? The model is frozen; the chains and a fresh set of as
    many chains started from data sequences (drawn with probability $\propto w_m$) run
    `n_sweeps` sweeps each, recording the energy after every sweep. Returns

    * ``rhat``, ``tau``: split R-hat and the integrated autocorrelation time (in sweeps) of the
      chains' energy trace (`jaxpotts.diagnostics`);
    * ``energy_chains``, ``energy_fresh``, ``energy_diff_se``, ``energy_std``: the mean energies
      of both sets over the second half of the run, the standard error of their difference
      (from per-chain means) and the spread of single-chain energies;
    * ``equilibrated``: ``rhat < 1.1`` and $|\bar E_{chains} - \bar E_{fresh}| \le \max(3\,\mathrm{se}, 0.05\,\sigma_E)$;
    * ``pair_frequencies``: the chains' $f_{ij}$ averaged over the run (every
      ``max(1, n_sweeps // 20)``-th sweep), the statistics of the frozen model.
    """
    joint = _joint(model)
    n_sweeps = check_count(n_sweeps, "n_sweeps", minimum=8)
    chains = check_sequences(chains, joint.L, joint.q, "chains")
    seqs = check_sequences(seqs, joint.L, joint.q, "seqs")
    w = check_weights(weights, seqs.shape[0])
    w = jnp.ones(seqs.shape[0]) if w is None else w
    k_pick, k_run, k_fresh = jax.random.split(key, 3)
    pick = jax.random.choice(k_pick, seqs.shape[0], (chains.shape[0],), p=w / jnp.sum(w))
    thin = max(1, n_sweeps // 20)
    _, f2, trace = _frozen_run(joint, k_run, chains, n_sweeps, thin, method)
    _, _, fresh = _frozen_run(joint, k_fresh, seqs[pick], n_sweeps, n_sweeps, method)
    trace, fresh = np.asarray(trace, np.float64), np.asarray(fresh, np.float64)
    half = n_sweeps // 2
    a, b = trace[:, half:].mean(axis=1), fresh[:, half:].mean(axis=1)
    se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    diff = float(a.mean() - b.mean())
    spread = float(trace[:, half:].std())
    rhat = float(diagnostics.split_rhat(trace))
    tau = float(diagnostics.integrated_autocorrelation_time(trace))
    return dict(
        rhat=rhat,
        tau=tau,
        energy_chains=float(a.mean()),
        energy_fresh=float(b.mean()),
        energy_diff_se=se,
        energy_std=spread,
        equilibrated=bool(rhat < 1.1 and abs(diff) <= max(3.0 * se, 0.05 * spread)),
        n_sweeps=n_sweeps,
        pair_frequencies=f2,
    )


# ----------------------------------------------------------------------------- driver


@dataclasses.dataclass
class BoltzmannResult:
    """What `fit_boltzmann` returns.

    Attributes:
        model: the fitted model (same class as the start).
        history: per chunk: ``step``, ``pearson`` (connected correlations of the chunk's
            averaged chain statistics vs the data), ``grad_norm`` (mean over the chunk),
            ``seconds`` (wall time since the start, across resumes).
        reached: the target Pearson was reached by the frozen model's statistics with
            equilibrated chains (`equilibration_check`).
        pearson, site_pearson: connected-correlation and one-site Pearson of the frozen model
            (the last equilibration check's statistics) against the weighted data.
        equilibration: the last `equilibration_check` (without arrays).
        chains: the persistent chains (n_chains, L).
        settings: the recipe used.
    """

    model: Any
    history: dict
    reached: bool
    pearson: float
    site_pearson: float
    equilibration: dict
    chains: Any
    settings: dict

    def summary(self) -> dict:
        """JSON-ready: settings, target reached, final Pearsons, equilibration evidence, steps, time."""
        h = self.history
        return dict(
            reached=self.reached,
            pearson=self.pearson,
            site_pearson=self.site_pearson,
            steps=h["step"][-1] if h["step"] else 0,
            seconds=h["seconds"][-1] if h["seconds"] else 0.0,
            equilibration=self.equilibration,
            settings=self.settings,
        )


def _settings(overrides: dict) -> dict:
    s = defaults.BOLTZMANN.settings(**overrides)
    if s["optimizer"] == "lbfgs":
        raise ValueError("Boltzmann learning uses stochastic gradients: optimizer must be 'adam' or 'sgd'")
    Optimization(optimizer=s["optimizer"], learning_rate=s["learning_rate"])  # validates both
    Regularization(l2=s["l2"], l2_fields=s["l2_fields"])
    for name in ("n_chains", "sweeps", "n_steps", "chunk", "check_sweeps"):
        s[name] = check_count(s[name], name)
    if not 0.0 <= s["pseudocount"] < 1.0:
        raise ValueError(f"pseudocount must be in [0, 1), got {s['pseudocount']!r}")
    if not 0.0 < s["target"] <= 1.0:
        raise ValueError(f"target must be a Pearson correlation in (0, 1], got {s['target']!r}")
    for name in ("field_lr_factor", "decay"):
        if not s[name] > 0:
            raise ValueError(f"{name} must be positive, got {s[name]!r}")
    if not 0.0 < s["backoff_lr"] <= 1.0:
        raise ValueError(f"backoff_lr must be in (0, 1], got {s['backoff_lr']!r}")
    s["backoff_sweeps"] = check_count(s["backoff_sweeps"], "backoff_sweeps")
    s["max_backoffs"] = check_count(s["max_backoffs"], "max_backoffs", minimum=0)
    return {k: s[k] for k in (*_EXTRA, "optimizer", "learning_rate", "l2", "l2_fields", "n_steps")}


def _start_model(start: Any, seqs, q: int, weights, pseudocount: float):
    if isinstance(start, str):
        if start not in ("profile", "zero"):
            raise ValueError(f"start must be 'profile', 'zero' or a model, got {start!r}")
        model = _independent_start(seqs, q, weights, pseudocount)
        return model if start == "profile" else PottsModel(jnp.zeros_like(model.fields), model.couplings)
    if getattr(start, "L", None) != seqs.shape[1] or getattr(start, "q", None) != q:
        raise ValueError(
            f"start model has L={getattr(start, 'L', None)}, q={getattr(start, 'q', None)} but the data "
            f"L={seqs.shape[1]}, q={q}"
        )
    if isinstance(start, PottsModel) and not bool(jnp.allclose(start.couplings, start.couplings.transpose(1, 0, 3, 2))):
        start = PottsModel(start.fields, 0.5 * (start.couplings + start.couplings.transpose(1, 0, 3, 2)))
    return start


def _initial_chains(model, key, n_chains: int, f1) -> Int[Array, "n L"]:
    """Chains drawn from the independent-site model of the data (close to a profile start)."""
    return jax.random.categorical(key, jnp.log(f1)[None], shape=(n_chains, model.L)).astype(jnp.int32)


def _setup(seqs, q, weights, start, s, key):
    """(problem, initial state, static part of the model, data connected correlations, data f1)."""
    seqs = check_sequences(seqs, np.shape(seqs)[-1], q, "seqs")
    if seqs.ndim != 2 or seqs.shape[0] < 2:
        raise ValueError(f"seqs must have shape (M, L) with M >= 2, got {tuple(seqs.shape)}")
    model = _start_model(start, seqs, q, weights, s["pseudocount"])
    dtype = model.fields.dtype if hasattr(model, "fields") and model.fields is not None else jnp.float32
    f1, f2 = data_statistics(seqs, q, weights, pseudocount=s["pseudocount"])
    c_data, site_data = _data_targets(seqs, q, weights)
    opt = named_optimizer(s["optimizer"])
    problem = _Problem(
        f1.astype(dtype),
        f2.astype(dtype),
        jnp.asarray(s["l2"], dtype),
        jnp.asarray(s["l2_fields"], dtype),
        jnp.asarray(s["learning_rate"], dtype),
        jnp.asarray(s["field_lr_factor"], dtype),
        jnp.asarray(s["decay"], dtype),
        opt,
        s["sweeps"],
        "gibbs",
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    chains = _initial_chains(model, key, s["n_chains"], f1)
    state = _State(params, opt.init(params), chains, jnp.zeros((), jnp.int32))
    return problem, state, static, c_data, site_data


def _data_targets(seqs, q: int, weights) -> tuple[np.ndarray, np.ndarray]:
    """The weighted data's connected correlations (i < j, flattened) and one-site frequencies
    (flattened), no pseudocount: what the Pearsons of `_check` compare against."""
    raw1 = site_frequencies(seqs, q, weights)
    return _connected(raw1, pair_frequencies(seqs, q, weights)), np.asarray(raw1, np.float64).ravel()


def _check(model, chains, seqs, weights, key, s, c_data, site_data) -> tuple[float, float, dict]:
    """(connected Pearson, site Pearson, evidence) of the frozen model (`equilibration_check`)."""
    ev = equilibration_check(model, chains, seqs, weights, key=key, n_sweeps=s["check_sweeps"])
    f2 = ev.pop("pair_frequencies")
    f1 = _site_from_pairs(f2)
    return _pearson(c_data, _connected(f1, f2)), _pearson(site_data, np.asarray(f1, np.float64).ravel()), ev


def frozen_model_pearson(
    model: Any,
    chains: Int[Array, "n_chains L"],
    seqs: Int[Array, "M L"],
    weights: Float[Array, " M"] | None = None,
    *,
    key: PRNGKeyArray,
    n_sweeps: int | None = None,
) -> dict:
    r"""The score `fit_boltzmann` stops on, for any model: `equilibration_check` of `model`
    with `chains` (e.g. its persistent chains, or another tool's) for `n_sweeps` sweeps
    (default: the recipe's ``check_sweeps``), then the Pearson correlation of the frozen
    model's connected correlations $C_{ij}(a,b) = p_{ij}(a,b) - p_i(a) p_j(b)$ ($i < j$, all
    colour pairs; $p$ averaged over the check's sweeps) with the weighted data's (no
    pseudocount), and of the one-site frequencies. The same code path as the checks of a fit.

    Returns the evidence of `equilibration_check` (without ``pair_frequencies``) with
    ``pearson`` and ``site_pearson`` added.
    """
    joint = _joint(model)
    seqs = check_sequences(seqs, joint.L, joint.q, "seqs")
    n_sweeps = defaults.BOLTZMANN.settings()["check_sweeps"] if n_sweeps is None else n_sweeps
    c_data, site_data = _data_targets(seqs, joint.q, check_weights(weights, seqs.shape[0]))
    r, r_site, ev = _check(model, chains, seqs, weights, key, {"check_sweeps": n_sweeps}, c_data, site_data)
    return dict(ev, pearson=r, site_pearson=r_site)


def _resume(path: Path, state: _State, s: dict) -> tuple[_State, dict, float]:
    from .serialization import load_checkpoint

    state, meta = load_checkpoint(path, state)
    # Only the stopping rules may change on resume: the trajectory does not depend on them.
    free = ("n_steps", "target", "check_sweeps")
    saved = {k: v for k, v in meta.get("settings", {}).items() if k not in free}
    given = {k: v for k, v in s.items() if k not in free}
    if saved != given:
        raise ValueError(f"checkpoint {path} was written with other settings: {saved} (now {given})")
    history = {"backoffs": [], **meta["history"]}
    return state, history, float(history["seconds"][-1] if history["seconds"] else 0.0)


def fit_boltzmann(
    seqs: Int[Array, "M L"],
    *,
    q: int,
    key: PRNGKeyArray,
    weights: Float[Array, " M"] | None = None,
    start: Any = None,
    progress: bool | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    max_seconds: float | None = None,
    **overrides: Any,
) -> BoltzmannResult:
    r"""Fit a Potts model to an alignment by Boltzmann-machine learning (module docstring).

    `start`: "profile" (the independent-site model, `jaxpotts.mutations.independent_model`), "zero", or a model to
    refine (a `PottsModel`, e.g. a plmDCA fit, symmetrised; a `FactoredPotts` with symmetric J
    and U; a factored attention layer, whose joint model is sampled). Default: the recipe's.
    `overrides`: any entry of `jaxpotts.defaults.BOLTZMANN` (`n_chains`, `sweeps`,
    `learning_rate`, `pseudocount`, `l2`, `target`, `n_steps`, ...). Stops when the target
    Pearson is reached with equilibrated chains, after `n_steps` updates or after `max_seconds`.
    A checkpoint (state, history, settings) is written after every chunk when
    `checkpoint_path` is given; `resume=True` continues it (same data, key and settings;
    `n_steps`, `target` and `check_sweeps` may change) and gives the same trajectory as an
    uninterrupted run.
    """
    s = _settings({"start": "profile", **overrides} if start is None else {**overrides, "start": "given"})
    start = s["start"] if start is None or isinstance(start, str) else start
    if isinstance(start, str):
        s["start"] = start
    k_init, k_train, k_check = jax.random.split(key, 3)
    problem, state, static, c_data, site_data = _setup(seqs, q, weights, start, s, k_init)
    history = {"step": [], "pearson": [], "grad_norm": [], "seconds": [], "backoffs": []}
    offset = 0.0
    path = None if checkpoint_path is None else Path(checkpoint_path)
    if resume and path is not None and path.exists():
        state, history, offset = _resume(path, state, s)
    reached, ev, r, r_site = _train(
        problem,
        state,
        static,
        (k_train, k_check),
        s,
        (seqs, weights, c_data, site_data),
        history,
        offset,
        path,
        progress,
        max_seconds,
    )
    return BoltzmannResult(ev.pop("model"), history, reached, r, r_site, ev, ev.pop("chains"), s)


def _backed_off(problem: _Problem, s: dict, k: int) -> _Problem:
    """The update rule after `k` back-offs: learning rate x backoff_lr^k, sweeps x backoff_sweeps^k."""
    return dataclasses.replace(
        problem,
        learning_rate=problem.learning_rate * s["backoff_lr"] ** k,
        sweeps=s["sweeps"] * s["backoff_sweeps"] ** k,
    )


def _train(problem, state, static, keys, s, data, history, offset, path, progress, max_seconds):
    from .serialization import save_checkpoint

    k_train, k_check = keys
    seqs, weights, c_data, site_data = data
    t0 = time.perf_counter() - offset
    n_chunk = s["chunk"]
    reached, ev, r, r_site = False, None, float("nan"), float("nan")
    rule = _backed_off(problem, s, len(history["backoffs"]))
    with progress_bar(s["n_steps"], "bmDCA", progress, unit="update") as bar:
        bar.update(int(state.step))
        while int(state.step) < s["n_steps"]:
            n = min(n_chunk, s["n_steps"] - int(state.step))
            _, state, s1, s2, norms = _advance(rule, state, static, k_train, jnp.asarray(n), n_chunk)
            rc = _pearson(c_data, _connected(s1 / n, s2 / n))
            g = float(np.nanmean(np.asarray(norms)))
            history["step"].append(int(state.step))
            history["pearson"].append(rc)
            history["grad_norm"].append(g)
            history["seconds"].append(time.perf_counter() - t0)
            bar.update(n)
            bar.set_postfix_str(f"pearson C {rc:.3f}, |grad| {g:.2e}")
            timeout = max_seconds is not None and history["seconds"][-1] >= max_seconds
            if rc >= s["target"] or timeout or int(state.step) >= s["n_steps"]:
                model = eqx.combine(state.params, static)
                r, r_site, ev = _check(
                    model, state.chains, seqs, weights, jax.random.fold_in(k_check, state.step), s, c_data, site_data
                )
                reached = ev["equilibrated"] and r >= s["target"]
                # The chains' statistics reached the target but the frozen model's did not: the
                # model moves faster than its chains mix, so slow the updates and sweep more.
                if not reached and rc >= s["target"] and len(history["backoffs"]) < s["max_backoffs"]:
                    history["backoffs"].append(int(state.step))
                    rule = _backed_off(problem, s, len(history["backoffs"]))
            if path is not None:
                save_checkpoint(path, state, {"history": history, "settings": s})
            if reached or timeout:
                break
    ev = dict(ev, model=eqx.combine(state.params, static), chains=state.chains)
    return reached, ev, r, r_site

r"""Beyond empirical risk minimisation: the Bayes-optimal error and the optimal ridge.

**Bayes-optimal estimator.** With the teacher prior $J^*_j \sim \mathcal N(0, \rho/N)$ known, the
posterior-mean predictor is the best any estimator can do from the same $M$ samples. Its
high-dimensional limit is the state evolution of the Bayes-optimal generalised linear model
(Barbier, Krzakala, Macris, Miolane, Zdeborova, PNAS 2019), here with a K-dimensional field
and the teacher kernel $T(y, u^*)$ as output channel. By the Nishimori identity
$m = Q = q$ and a single overlap obeys

$$\hat q = \alpha\,\mathbb E_\xi \sum_y \frac{|\bar G(y,\xi)|^2}{\bar T(y,\xi)},\qquad
  q = \frac{\rho^2\hat q}{1 + \rho\hat q},$$

with $\bar T$, $\bar G$ the teacher kernel and its gradient averaged over $u^* = \sqrt q\,\xi +
\sqrt{\rho - q}\,\eta$ (so $\bar T(y, \cdot)$ is the channel's $Z_{\rm out}$ and
$\bar G/\bar T = \nabla\log Z_{\rm out}$); the prior's part is the Gaussian channel,
$q = \rho - \rho/(1+\rho\hat q)$. At a fresh input the posterior of $u^*$ is
$\mathcal N(\hat w, (\rho - q) I)$ with $\hat w \sim \mathcal N(0, qI)$, so the Bayes predictive
is $\hat P(y\mid\hat w) \propto \bar T(y, \hat w)$ and its test loss is
$\mathbb E\sum_y \bar T\,(-\log \hat P)$. For ``star`` the kernel $e^{b_y\cdot u^*}/c$ makes
$|\bar G|^2/\bar T = \bar T |b_y|^2$, so $\hat q = \alpha\sum_y \pi_y |b_y|^2$ does not depend
on $q$: the inputs of a star model are themselves informative (each $s_j$ is a noisy view of
$J^*_j$ given $s_0$), which the generative posterior uses and the conditional (MLM) loss does not.

**Optimal ridge.** `optimal_lambda` minimises the ERM test loss (or another observable) over
$\log\lambda$ by Newton's method, with first and second derivatives of the observable taken
through the fixed point by the implicit function theorem (`solve` is differentiable):
no grid search.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, ScalarLike

from .._progress import progress_bar
from ._fixed_point import RESULTS, error_unless_converged, fixed_point, residual, result_code
from .integrals import Integrator, entropy_integral, integration_points
from .scenario import Scenario
from .solver import Problem, Solution, check_options, check_point, make_problem, solve_problem

__all__ = ["BayesSolution", "bayes_optimal", "bayes_curve", "OptimalLambda", "optimal_lambda", "optimal_lambda_curve"]


class BayesSolution(eqx.Module):
    r"""State-evolution fixed point of the Bayes-optimal estimator.

    Attributes:
        alpha: sample ratio.
        q: overlap $q = m = Q$ of the posterior mean with the teacher; q_hat its conjugate.
        test_loss: expected log-loss of the Bayes predictive on a fresh sample.
        entropy: the teacher's conditional entropy (the floor); excess_loss = test_loss - entropy.
        coupling_error: $(\rho - q)/\rho$, the normalised minimum mean-square error on $J^*$.
        residual, n_steps, result: as in `Solution`.
    """

    alpha: Float[Array, ""]
    q: Float[Array, ""]
    q_hat: Float[Array, ""]
    test_loss: Float[Array, ""]
    entropy: Float[Array, ""]
    excess_loss: Float[Array, ""]
    coupling_error: Float[Array, ""]
    residual: Float[Array, ""]
    n_steps: Int[Array, ""]
    result: RESULTS

    @property
    def message(self) -> str:
        return RESULTS[self.result]


def _q_hat(kind, p: Problem, q):
    _, T, G = integration_points(kind, p.B, p.rho, p.nodes, q, q)
    tiny = jnp.finfo(T.dtype).tiny
    ratio = jnp.where(T > tiny, jnp.sum(G**2, axis=-1) / jnp.maximum(T, tiny), 0.0)
    return p.alpha * jnp.einsum("p,py->", p.nodes.wxi, ratio)


def _bayes_map(kind, x, p: Problem, aux):
    q_hat = _q_hat(kind, p, x[0])
    return jnp.stack([p.rho**2 * q_hat / (1.0 + p.rho * q_hat)]), aux


def _bayes_test_loss(kind, p: Problem, q):
    w, T, _ = integration_points(kind, p.B, p.rho, p.nodes, q, q)
    if kind == "star":
        b2 = jnp.sum(p.B**2, axis=1)
        logits = w @ p.B.T + (p.rho - q) * b2 / 2  # (P, q_label, q_colour)
        logP = jax.nn.log_softmax(logits, axis=-1)
        logP = jnp.diagonal(logP, axis1=1, axis2=2)  # label y evaluated at its own node
    else:
        tiny = jnp.finfo(T.dtype).tiny
        logP = jnp.log(jnp.maximum(T, tiny) / jnp.sum(T, axis=-1, keepdims=True))
    return -jnp.einsum("p,py,py->", p.nodes.wxi, T, logP)


@eqx.filter_jit
def _bayes_jit(kind, p, x0, tol, max_steps, damping, anderson):
    def admissible(x, theta):
        return (x[0] >= 0) & (x[0] <= theta.rho)

    x, _, n_steps, _, result = fixed_point(
        lambda x, theta, aux: _bayes_map(kind, x, theta, aux),
        p,
        x0,
        jnp.zeros(()),
        tol=tol,
        max_steps=max_steps,
        damping=damping,
        memory=anderson,
        admissible=admissible,
    )
    q = x[0]
    Fx, _ = _bayes_map(kind, x, p, None)
    test = _bayes_test_loss(kind, p, q)
    entropy = entropy_integral(kind, p.B, p.rho, p.nodes)
    return BayesSolution(
        alpha=p.alpha,
        q=q,
        q_hat=_q_hat(kind, p, q),
        test_loss=test,
        entropy=entropy,
        excess_loss=test - entropy,
        coupling_error=(p.rho - q) / p.rho,
        residual=residual(Fx, x),
        n_steps=n_steps,
        result=result,
    )


def bayes_optimal(
    scenario: Scenario,
    alpha: ScalarLike,
    *,
    tol: float | None = None,
    max_steps: int = 10_000,
    damping: float = 0.0,
    anderson: int = 2,
    init: ScalarLike | None = None,
    integrator: Integrator | None = None,
    throw: bool = False,
) -> BayesSolution:
    r"""Bayes-optimal state evolution at sample ratio `alpha` (see the module docstring).

    Args and options as in `solve`; `init` is a starting overlap $q \in [0, \rho]$.
    Jittable and vmappable over `alpha`.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    check_point(alpha, 1.0)
    dtype = jnp.result_type(float)
    tol = check_options(tol, max_steps, damping, dtype)
    p, kind = make_problem(scenario, integrator, alpha, 0.0, dtype)
    x0 = jnp.zeros(1, dtype) if init is None else jnp.reshape(jnp.asarray(init, dtype), (1,))
    sol = _bayes_jit(
        kind, p, x0, jnp.asarray(tol, dtype), jnp.asarray(max_steps), jnp.asarray(damping, dtype), int(anderson)
    )
    if throw:
        sol = eqx.tree_at(lambda s: s.q, sol, error_unless_converged(sol.q, sol.result))
    return sol


def bayes_curve(scenario: Scenario, alphas, **options) -> dict[str, np.ndarray]:
    """Bayes-optimal observables on an alpha grid (vmapped): a tidy table of numpy arrays with
    columns alpha, q, q_hat, test_loss, entropy, excess_loss, coupling_error, residual,
    n_steps, result, converged."""
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-d sequence, got shape {alphas.shape}")
    check_point(alphas, 1.0)
    sols = jax.vmap(lambda a: bayes_optimal(scenario, a, **options))(jnp.asarray(alphas, jnp.result_type(float)))
    out = {
        name: np.asarray(getattr(sols, name))
        for name in (
            "alpha",
            "q",
            "q_hat",
            "test_loss",
            "entropy",
            "excess_loss",
            "coupling_error",
            "residual",
            "n_steps",
        )
    }
    out["result"] = np.asarray(result_code(sols.result))
    out["converged"] = np.asarray(sols.result == RESULTS.converged)
    return out


# ----------------------------------------------------------------------------- optimal lambda

_METRICS = ("test_loss", "excess_loss", "coupling_error")


class OptimalLambda(eqx.Module):
    """Result of `optimal_lambda`: the minimising ridge, the solution there, the derivative of
    the metric with respect to log(lam) at it (zero at an interior optimum), the number of
    Newton iterations, and whether the optimum is interior (False if a bound was hit)."""

    lam: Float[Array, ""]
    solution: Solution
    gradient: Float[Array, ""]
    n_iter: int
    converged: bool
    at_bound: bool


@eqx.filter_jit
def _metric_derivatives(kind, p_template, alpha, t, x0, metric, tol, max_steps, damping, anderson):
    """Metric, d metric / d log lam and d^2 metric / d log lam^2 at lam = e^t (implicit diff)."""

    def solve_at(t_):
        p = eqx.tree_at(lambda s: (s.alpha, s.lam), p_template, (alpha, jnp.exp(t_)))
        return solve_problem(kind, p, x0, tol=tol, max_steps=max_steps, damping=damping, memory=anderson)

    def value(t_):
        return getattr(solve_at(t_), metric)

    def first(t_):
        return jax.jvp(value, (t_,), (jnp.ones_like(t_),))

    (v, d1), (_, d2) = jax.jvp(first, (t,), (jnp.ones_like(t),))
    return v, d1, d2, solve_at(t)


def optimal_lambda(
    scenario: Scenario,
    alpha: float,
    *,
    metric: str = "test_loss",
    lam0: float = 1.0,
    bounds: tuple[float, float] = (1e-6, 1e4),
    grad_tol: float = 1e-9,
    max_iter: int = 50,
    init: Solution | None = None,
    **solver: Any,
) -> OptimalLambda:
    r"""The ridge $\lambda^*(\alpha) = \arg\min_\lambda$ `metric` of the ERM fixed point.

    Newton's method on $t = \log\lambda$ with
    $\partial_t$ and $\partial_t^2$ of the metric from forward-mode differentiation through
    the fixed point (implicit function theorem, twice), steps clipped to $|\Delta t| \le 1$,
    a gradient step of size 1 where the metric is locally concave, and $t$ kept in
    $\log$ `bounds`. Stops when $|\partial_t\,\mathrm{metric}| \le$ `grad_tol`.

    Args:
        metric: ``"test_loss"`` (default; same minimiser as ``"excess_loss"``) or
            ``"coupling_error"``.
        lam0: starting ridge; init: a nearby `Solution` to warm-start the saddle point.
        **solver: the fixed-point options of `solve` (``tol``, ``max_steps`` = 10000,
            ``damping`` = 0, ``anderson`` = 3, ``integrator``).
    """
    unknown = sorted(set(solver) - {"tol", "max_steps", "damping", "anderson", "integrator"})
    if unknown:
        raise TypeError(f"unknown solver option(s): {', '.join(unknown)}")
    tol, max_steps = solver.get("tol"), solver.get("max_steps", 10_000)
    damping, anderson, integrator = solver.get("damping", 0.0), solver.get("anderson", 3), solver.get("integrator")
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    lo, hi = bounds
    if not (0 < lo < hi < np.inf):
        raise ValueError(f"bounds must satisfy 0 < lo < hi < inf, got {bounds}")
    if not lo <= lam0 <= hi:
        raise ValueError(f"lam0 = {lam0} is outside bounds {bounds}")
    check_point(alpha, lam0)
    dtype = jnp.result_type(float)
    tol = check_options(tol, max_steps, damping, dtype)
    p, kind = make_problem(scenario, integrator, alpha, lam0, dtype)
    t = float(np.log(lam0))
    t_lo, t_hi = float(np.log(lo)), float(np.log(hi))
    x0 = None if init is None else jnp.stack([init.m, init.Q, init.V]).astype(dtype)
    converged = at_bound = False
    n_iter = 0
    alpha_arr = jnp.asarray(alpha, dtype)
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        v, d1, d2, sol = _metric_derivatives(
            kind,
            p,
            alpha_arr,
            jnp.asarray(t, dtype),
            x0,
            metric,
            jnp.asarray(tol, dtype),
            jnp.asarray(max_steps),
            jnp.asarray(damping, dtype),
            int(anderson),
        )
        if sol.result != RESULTS.converged:
            raise RuntimeError(f"optimal_lambda: the saddle point at lam = {np.exp(t):.4g} failed: {sol.message}")
        x0 = jnp.stack([sol.m, sol.Q, sol.V])
        d1, d2 = float(d1), float(d2)
        if abs(d1) <= grad_tol:
            converged = True
            break
        step = -d1 / d2 if d2 > 0 else -np.sign(d1)
        step = float(np.clip(step, -1.0, 1.0))
        t_new = float(np.clip(t + step, t_lo, t_hi))
        if t_new == t:  # pinned at a bound with the gradient pointing outwards
            at_bound = True
            break
        t = t_new
    return OptimalLambda(
        lam=jnp.exp(jnp.asarray(t, dtype)),
        solution=sol,
        gradient=jnp.asarray(d1),
        n_iter=n_iter,
        converged=converged,
        at_bound=at_bound,
    )


def optimal_lambda_curve(
    scenario: Scenario, alphas, *, lam0: float = 1.0, progress: bool | None = None, **options
) -> dict[str, np.ndarray]:
    """`optimal_lambda` along an alpha grid, each warm-started from the previous optimum.

    Returns a tidy table: alpha, lam (the optimum), the ERM observables there (m, Q, V,
    test_loss, entropy, excess_loss, coupling_error, train_loss), gradient, n_iter, converged.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    rows = []
    lam, init = lam0, None
    with progress_bar(alphas.size, f"optimal lambda ({scenario.kind}, q={scenario.q})", progress, unit="alpha") as bar:
        for a in alphas:
            res = optimal_lambda(scenario, float(a), lam0=lam, init=init, **options)
            lam, init = float(res.lam), res.solution
            s = res.solution
            rows.append(
                dict(
                    alpha=float(a),
                    lam=lam,
                    m=float(s.m),
                    Q=float(s.Q),
                    V=float(s.V),
                    test_loss=float(s.test_loss),
                    entropy=float(s.entropy),
                    excess_loss=float(s.excess_loss),
                    coupling_error=float(s.coupling_error),
                    train_loss=float(s.train_loss),
                    gradient=float(res.gradient),
                    n_iter=res.n_iter,
                    converged=res.converged,
                )
            )
            bar.update(1)
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}

r"""Saddle-point solver of the replica scenario: `solve` one (alpha, lambda) point.

With the channel averages of `integrals.hat_integrals` the replica-symmetric equations are

$$\hat m = \alpha\,\mathbb E\sum_y \bar G\cdot f,\quad
  \hat Q = \alpha\,\mathbb E\sum_y \bar T |f|^2,\quad
  \hat V = -\alpha\,\mathbb E\sum_y \bar T\operatorname{tr}\partial_w f,$$
$$V = \frac{1}{\lambda + \hat V},\quad m = \frac{\rho\,\hat m}{\lambda + \hat V},\quad
  Q = \frac{\rho\,\hat m^2 + \hat Q}{(\lambda + \hat V)^2},$$

solved as the fixed point $x = F(x)$ of $x = (m, Q, V)$ by damped iteration
(`_fixed_point`). Observables at the fixed point:

- test loss $\mathbb E\sum_y T(y,u^*)\,\ell(y, Bu)$, $(u^*, u)$ Gaussian with covariances $(\rho, m, Q)$;
- entropy (the floor): the same with $u$ replaced by $u^*$;
- excess loss = test loss - entropy (an expected KL divergence, $\ge 0$);
- coupling error $|\hat J - J^*|^2/|J^*|^2 = (Q - 2m + \rho)/\rho$;
- train loss $\frac1M\sum_\mu \ell(y^\mu, \hat z^\mu) = \mathbb E_\xi\sum_y \bar T\,\ell(y, B u_{\rm prox})$:
  on a training sample the minimiser's field is the proximal point of its cavity field.

Precision: the solver works in float64 when JAX's x64 mode is enabled (the default
``tol = 1e-10`` is meant for that) and in float32 otherwise (default ``tol = 1e-5``); it
never changes the global configuration. Enable x64 with ``jax.config.update("jax_enable_x64",
True)`` or the ``jax.enable_x64(True)`` context manager for tight tolerances.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, ScalarLike

from ._fixed_point import RESULTS, error_unless_converged, fixed_point, residual
from .integrals import (
    Integrator,
    Nodes,
    default_integrator,
    entropy_integral,
    hat_integrals,
    integration_points,
    make_nodes,
    test_loss_integral,
    train_loss_integral,
)
from .scenario import Scenario, as_dtype

__all__ = ["Solution", "solve", "RESULTS", "default_tol", "saddle_point_update"]

# Besides `__all__` (re-exported by `jaxpotts.replica`), this module is the owner of the
# package-internal solver API that `curve` and `bayes` build on: `check_point`,
# `check_options`, `Problem`, `make_problem`, `initial_point`, `saddle_point_map` and
# `solve_problem`. They are public names (no other module imports a private helper), but not
# part of the user-facing API documented in docs/api.md.


def default_tol(dtype=None) -> float:
    """1e-10 in float64, 1e-5 in float32 (the default dtype follows JAX's x64 flag)."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-5


class Solution(eqx.Module):
    r"""A replica saddle point and its observables (all scalars, or batched under vmap).

    Attributes:
        alpha, lam: the sample ratio $M/N$ and the ridge strength.
        m, Q, V: overlaps $\hat J\cdot J^*$, $|\hat J|^2$ and the response $V$.
        m_hat, Q_hat, V_hat: their conjugates.
        test_loss, entropy, excess_loss, coupling_error, train_loss: see the module docstring.
        residual: $\max_i |F_i(x) - x_i|/(1 + |x_i|)$ at the returned point.
        n_steps: fixed-point iterations taken.
        result: a `RESULTS` item; ``RESULTS[sol.result]`` is a readable message.
    """

    alpha: Float[Array, ""]
    lam: Float[Array, ""]
    m: Float[Array, ""]
    Q: Float[Array, ""]
    V: Float[Array, ""]
    m_hat: Float[Array, ""]
    Q_hat: Float[Array, ""]
    V_hat: Float[Array, ""]
    test_loss: Float[Array, ""]
    entropy: Float[Array, ""]
    excess_loss: Float[Array, ""]
    coupling_error: Float[Array, ""]
    train_loss: Float[Array, ""]
    residual: Float[Array, ""]
    n_steps: Int[Array, ""]
    result: RESULTS

    @property
    def converged(self) -> Array:
        """Boolean (array): whether the solve converged."""
        return self.result == RESULTS.converged

    @property
    def message(self) -> str:
        """Readable outcome (unbatched solutions only)."""
        return RESULTS[self.result]


def check_point(alpha, lam) -> None:
    """Raise `ValueError` unless alpha >= 0 and lam >= 0 are finite and not both zero
    (array arguments are checked elementwise; traced values are skipped)."""
    for name, value, lower in (("alpha", alpha, 0.0), ("lam", lam, 0.0)):
        if isinstance(value, jax.core.Tracer):
            continue
        v = np.asarray(value)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite, got {value}")
        if np.any(v < lower):
            raise ValueError(f"{name} must be >= {lower:g}, got {value}")
    if not isinstance(alpha, jax.core.Tracer) and not isinstance(lam, jax.core.Tracer):
        if np.any((np.asarray(lam) == 0) & (np.asarray(alpha) == 0)):
            raise ValueError("lam = 0 needs alpha > 0 (with no data and no penalty the estimator is undefined)")


def check_options(tol, max_steps, damping, dtype) -> float:
    """Validate the solver options; returns `tol` as a float (its default for `dtype` if None).
    Warns when tol is below what `dtype` arithmetic can reach."""
    tol = default_tol(dtype) if tol is None else tol
    if not (isinstance(tol, (float, int)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if tol < 10 * float(jnp.finfo(dtype).eps):
        warnings.warn(
            f"tol={tol:g} is below what {jnp.dtype(dtype).name} arithmetic can reach; enable x64 "
            "(jax.config.update('jax_enable_x64', True)) or loosen tol",
            stacklevel=3,
        )
    if not (isinstance(max_steps, (int, np.integer)) and max_steps >= 1):
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not (isinstance(damping, (float, int)) and 0 <= damping < 1):
        raise ValueError(f"damping must be in [0, 1), got {damping!r}")
    return float(tol)


class Problem(eqx.Module):
    """Everything the saddle-point map needs, as arrays (the derivative parameters theta)."""

    B: Array
    rho: Array
    nodes: Nodes
    alpha: Array
    lam: Array


def make_problem(scenario: Scenario, integrator, alpha, lam, dtype) -> tuple[Problem, str]:
    """The `Problem` of `scenario` at (alpha, lam) with the integrator's nodes (default:
    `default_integrator`), in `dtype`, and the scenario kind (a static string)."""
    _, B, rho = as_dtype(scenario, dtype)
    integrator = default_integrator(scenario) if integrator is None else integrator
    nodes = make_nodes(scenario, integrator, dtype)
    return Problem(B, rho, nodes, jnp.asarray(alpha, dtype), jnp.asarray(lam, dtype)), scenario.kind


def saddle_point_map(kind: str, x: Float[Array, 3], p: Problem, f0=None):
    """One application of the saddle-point map F(m, Q, V) -> (m, Q, V); also returns the
    channel function f at every node (a warm start for the next application)."""
    (m_hat, Q_hat, V_hat), (_, _, f) = _hats(kind, x, p, f0)
    return _from_hats(p, m_hat, Q_hat, V_hat), f


def _hats(kind, x, p: Problem, f0=None):
    m, Q, V = x[0], x[1], x[2]
    (m_hat, Q_hat, V_hat), aux = hat_integrals(kind, p.B, p.rho, p.nodes, m, Q, V, f0)
    return (p.alpha * m_hat, p.alpha * Q_hat, p.alpha * V_hat), aux


def _from_hats(p: Problem, m_hat, Q_hat, V_hat):
    denom = p.lam + V_hat
    return jnp.stack([p.rho * m_hat / denom, (p.rho * m_hat**2 + Q_hat) / denom**2, 1.0 / denom])


def initial_point(p: Problem) -> Float[Array, 3]:
    """Default start (m, Q, V) = (0, 0, V0) of the fixed-point iteration (see `solve`)."""
    # Hessian of the loss at zero field is B^T B / q (B^T 1 = 0), so the response of the
    # first step is about 1 / (lam + alpha * mean eigenvalue of B^T B / q).
    q, K = p.B.shape
    curvature = jnp.sum(p.B**2) / (q * K)
    V0 = 1.0 / (p.lam + p.alpha * curvature)
    return jnp.stack([jnp.zeros_like(V0), jnp.zeros_like(V0), V0])


def _init_array(init, dtype) -> Array | None:
    if init is None:
        return None
    if isinstance(init, Solution):
        return jnp.stack([init.m, init.Q, init.V]).astype(dtype)
    arr = jnp.asarray(init, dtype=dtype)
    if arr.shape != (3,):
        raise ValueError(f"init must be a Solution or the triple (m, Q, V), got shape {tuple(arr.shape)}")
    return arr


def solve_problem(kind: str, p: Problem, x0, *, tol, max_steps, damping, memory=3) -> Solution:
    """The traced core of `solve`: the fixed point from x0 (None: `initial_point`), then the
    observables at it. Jittable, vmappable and differentiable in `p` (implicit function theorem)."""
    if x0 is None:
        x0 = initial_point(p)

    def F(x, theta, f0):
        return saddle_point_map(kind, x, theta, f0)

    def admissible(x, theta):
        return (x[1] >= 0) & (x[2] > 0) & (x[0] ** 2 <= theta.rho * x[1])

    w0, _, _ = integration_points(kind, p.B, p.rho, p.nodes, x0[0], x0[1])
    x, f, n_steps, _, result = fixed_point(
        F,
        p,
        x0,
        jnp.zeros_like(w0),
        tol=tol,
        max_steps=max_steps,
        damping=damping,
        memory=memory,
        admissible=admissible,
    )
    return _observables(kind, p, x, n_steps, result, f)


def _observables(kind, p: Problem, x, n_steps, result, f0=None) -> Solution:
    (m_hat, Q_hat, V_hat), (T, u, _) = _hats(kind, x, p, f0)
    r = residual(_from_hats(p, m_hat, Q_hat, V_hat), x)
    m, Q, V = x[0], x[1], x[2]
    test = test_loss_integral(kind, p.B, p.rho, p.nodes, m, Q)
    entropy = entropy_integral(kind, p.B, p.rho, p.nodes)
    train = train_loss_integral(p.B, p.nodes, T, u)
    return Solution(
        alpha=p.alpha,
        lam=p.lam,
        m=m,
        Q=Q,
        V=V,
        m_hat=m_hat,
        Q_hat=Q_hat,
        V_hat=V_hat,
        test_loss=test,
        entropy=entropy,
        excess_loss=test - entropy,
        coupling_error=(Q - 2 * m + p.rho) / p.rho,
        train_loss=train,
        residual=r,
        n_steps=n_steps,
        result=result,
    )


def saddle_point_update(
    scenario: Scenario,
    alpha: ScalarLike,
    lam: ScalarLike,
    m: ScalarLike,
    Q: ScalarLike,
    V: ScalarLike,
    *,
    integrator: Integrator | None = None,
) -> dict[str, Array]:
    r"""One application of the saddle-point equations at $(m, Q, V)$ (no iteration).

    Returns a dict with the conjugates ``m_hat, Q_hat, V_hat`` computed at $(m, Q, V)$, the
    updated ``m, Q, V`` they imply, and the ``test_loss`` at the input $(m, Q)$. A fixed point
    is a point that this map leaves unchanged. Useful to check the equations independently.
    """
    check_point(alpha, lam)
    dtype = jnp.result_type(float)
    p, kind = make_problem(scenario, integrator, alpha, lam, dtype)
    x = jnp.stack([jnp.asarray(m, dtype), jnp.asarray(Q, dtype), jnp.asarray(V, dtype)])
    return _update_jit(kind, p, x)


@eqx.filter_jit
def _update_jit(kind, p, x):
    (m_hat, Q_hat, V_hat), _ = _hats(kind, x, p)
    new = _from_hats(p, m_hat, Q_hat, V_hat)
    return dict(
        m=new[0],
        Q=new[1],
        V=new[2],
        m_hat=m_hat,
        Q_hat=Q_hat,
        V_hat=V_hat,
        test_loss=test_loss_integral(kind, p.B, p.rho, p.nodes, x[0], x[1]),
    )


@eqx.filter_jit
def _solve_jit(kind, p, x0, tol, max_steps, damping, memory):
    return solve_problem(kind, p, x0, tol=tol, max_steps=max_steps, damping=damping, memory=memory)


def solve(
    scenario: Scenario,
    alpha: ScalarLike,
    lam: ScalarLike,
    *,
    tol: float | None = None,
    max_steps: int = 10_000,
    damping: float = 0.0,
    init: None | Solution | Float[Array, 3] = None,
    integrator: Integrator | None = None,
    anderson: int = 3,
    throw: bool = False,
) -> Solution:
    r"""Solve the replica saddle point of `scenario` at sample ratio `alpha` and ridge `lam`.

    Args:
        scenario: the `Scenario`.
        alpha: $M/N \ge 0$ (may be traced: `solve` is jittable and vmappable over alpha, lam).
        lam: ridge strength $\lambda \ge 0$ of the penalty $\frac{\lambda N}{2}|J|^2$.
        tol: residual tolerance, $\max_i |F_i(x)-x_i|/(1+|x_i|) \le$ tol on $x = (m, Q, V)$.
            Default 1e-10 in float64 (x64 enabled), 1e-5 in float32.
        max_steps: iteration budget.
        damping: initial damping $d$ of $x \leftarrow x + (1-d)(F(x) - x)$, in [0, 1);
            adapted during the solve (more damping when the residual grows).
        init: warm start, a previous `Solution` or $(m, Q, V)$; default: no overlap,
            $V = 1/(\lambda + \alpha\,\mathrm{tr}(B^\top B)/(qK))$.
        integrator: `GaussHermite(...)` or `MonteCarlo(...)`; default `default_integrator`.
        anderson: Anderson-acceleration history length (0: plain damped iteration).
        throw: raise a `RuntimeError` carrying the `RESULTS` message unless converged (also
            under jit: equinox's public runtime-error API, `eqx.EquinoxRuntimeError`).

    Returns:
        `Solution`. Differentiable in alpha, lam (and the scenario's arrays) through the fixed
        point by the implicit function theorem.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    check_point(alpha, lam)
    dtype = jnp.result_type(float)
    tol = check_options(tol, max_steps, damping, dtype)
    p, kind = make_problem(scenario, integrator, alpha, lam, dtype)
    if not (isinstance(anderson, (int, np.integer)) and anderson >= 0):
        raise ValueError(f"anderson must be a non-negative integer (history length), got {anderson!r}")
    sol = _solve_jit(
        kind,
        p,
        _init_array(init, dtype),
        jnp.asarray(tol, dtype),
        jnp.asarray(max_steps),
        jnp.asarray(damping, dtype),
        int(anderson),
    )
    if throw:
        sol = eqx.tree_at(lambda s: s.m, sol, error_unless_converged(sol.m, sol.result))
    return sol

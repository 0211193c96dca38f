r"""Damped fixed-point iteration with adaptive damping and implicit differentiation.

`fixed_point(F, theta, x0, ...)` solves $x = F(x, \theta)$ inside `lax.while_loop` until the
componentwise residual

$$r(x) = \max_i \frac{|F_i(x) - x_i|}{1 + |x_i|}$$

is at most `tol`. The basic step is the damped iteration $x \leftarrow x + \eta\,g$ with
$g = F(x) - x$; $\eta = 1 - \text{damping}$ initially, halved (floor $10^{-3}$) whenever a
damped step made the residual grow, and otherwise grown by 10% up to 1.

It is accelerated by Anderson mixing (type II) over the last `memory` pairs $(x_i, g_i)$:
with $k$ the latest pair, $\gamma$ minimises $|S(g_k + \sum_i \gamma_i (g_i - g_k))|$ ($S$ the
residual's scaling; a pseudo-inverse drops near-collinear directions) and
$x \leftarrow x_k + g_k + \sum_i \gamma_i ((x_i - x_k) + (g_i - g_k))$, a multisecant
quasi-Newton step: for this 3-dimensional map it converges in about ten steps where plain
damping needs tens or hundreds. Safeguards: the history is dropped and the damped step taken
whenever the residual grew; an extrapolated point that is not admissible (e.g. $Q < 0$) is
replaced by the damped step; and after `_STALL` steps without a new best residual the
iteration runs damped steps for `_STALL` steps (Anderson mixing can stagnate).

The solution is differentiable in $\theta$ by the implicit function theorem: at a fixed point
$x^* = F(x^*, \theta)$,

$$\frac{dx^*}{d\theta} = (I - \partial_x F)^{-1}\,\partial_\theta F,$$

implemented as a custom JVP (forward mode, and reverse mode by JAX's transposition of the
linear tangent map); the iterations themselves are never differentiated, and the starting
point `x0` gets no derivative. Higher derivatives work too, since the rule is itself built
from differentiable pieces.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["RESULTS", "RESULT_ITEMS", "result_code", "error_unless_converged", "fixed_point", "residual"]

_ETA_MIN = 1e-3
_GROW = 1.1
_STALL = 8  # Anderson steps without a new best residual before falling back to damping


class RESULTS(eqx.Enumeration):
    """Outcome of a saddle-point solve (compare with ``==``; ``RESULTS[result]`` is the message)."""

    converged = "converged: the fixed-point residual is below tol"
    max_steps_reached = (
        "the saddle-point iteration reached max_steps without converging; increase max_steps, "
        "increase the damping, or warm-start it from a nearby solution (init=...)"
    )
    nan = (
        "the saddle-point iteration produced NaN or inf order parameters; check alpha, lam and the "
        "scenario, or increase the damping"
    )
    diverged = (
        "the order parameters diverged (|x| grew beyond 1e12): the empirical risk minimiser does "
        "not exist or is unbounded here (e.g. separable data with lam -> 0)"
    )


# Every outcome, in the order of their integer codes (the order of definition above): the
# codes written into learning-curve tables and `result_messages`.
RESULT_ITEMS = (RESULTS.converged, RESULTS.max_steps_reached, RESULTS.nan, RESULTS.diverged)


def result_code(result: RESULTS) -> jax.Array:
    """Integer code of a (possibly batched) `RESULTS` item: its index in `RESULT_ITEMS`.

    Built from equality tests only (public `eqx.Enumeration` API), so it works on batched
    results (vmap) and under jit.
    """
    code = jnp.zeros((), jnp.int32)
    for index, item in enumerate(RESULT_ITEMS):
        code = code + index * (result == item).astype(jnp.int32)
    return code


def error_unless_converged(token, result: RESULTS):
    """Raise a runtime error carrying `result`'s message unless it is `RESULTS.converged`.

    Uses `EnumerationItem.error_if`, equinox's public runtime-error API (an
    `eqx.EquinoxRuntimeError` at run time, also under jit); returns `token` unchanged, and the
    caller must use the returned token for the check to run.
    """
    return result.error_if(token, result != RESULTS.converged)


def residual(Fx, x):
    """Componentwise relative residual max_i |F_i(x) - x_i| / (1 + |x_i|)."""
    return jnp.max(jnp.abs(Fx - x) / (1.0 + jnp.abs(x)))


def _anderson_step(X, G, valid, k, beta, scale):
    """Anderson (type II) extrapolation from the history, relative to the latest pair k.

    Minimises |S (g_k + sum_i gamma_i (g_i - g_k))| over gamma (S = diag(1/scale), the
    residual's own scaling) by a pseudo-inverse that drops near-collinear directions, then
    returns x_k + beta g_k + sum_i gamma_i ((x_i - x_k) + beta (g_i - g_k)).
    """
    dX = jnp.where(valid[:, None], X - X[k], 0.0)
    dG = jnp.where(valid[:, None], G - G[k], 0.0)
    dGs = dG / scale
    gamma = -jnp.linalg.pinv(dGs.T, rtol=1e-8) @ (G[k] / scale)
    return X[k] + beta * G[k] + gamma @ (dX + beta * dG)


def _iterate(F: Callable, theta, x0, aux0, tol, max_steps, damping, memory, admissible):
    dtype = x0.dtype
    n = x0.shape[0]
    mem = max(memory, 1)
    eta0 = jnp.asarray(1.0 - damping, dtype)
    inf = jnp.asarray(jnp.inf, dtype)

    def cond(state):
        return (state["step"] < max_steps) & ~(state["r"] <= tol) & ~state["bad"]

    def body(st):
        x, eta = st["x"], st["eta"]
        Fx, aux = F(x, theta, st["aux"])
        g = Fx - x
        finite = jnp.all(jnp.isfinite(Fx))
        bad = ~finite | jnp.any(jnp.abs(Fx) > 1e12)
        r = jnp.where(finite, residual(Fx, x), inf)
        grew = r > st["r"]
        # Damping adapts to plain steps only: halved when a plain step made the residual grow.
        eta = jnp.where(
            grew & ~st["from_aa"], jnp.maximum(eta * 0.5, _ETA_MIN), jnp.where(grew, eta, jnp.minimum(eta * _GROW, 1.0))
        )
        # Stagnation guard: Anderson steps are used only while they keep improving the best
        # residual within a few steps.
        improved = r < st["r_best"]
        r_best = jnp.where(improved, r, st["r_best"])
        since = jnp.where(improved, 0, st["since"] + 1)
        X, G, valid, slot = st["hist"]
        X = X.at[slot].set(x)
        G = G.at[slot].set(g)
        valid = jnp.where(grew, jnp.zeros_like(valid), valid).at[slot].set(True)
        damped = x + eta * g
        if memory > 0:
            accelerated = _anderson_step(X, G, valid, slot, 1.0, 1.0 + jnp.abs(x))
            use_aa = (
                ~grew
                & (since < _STALL)
                & (jnp.sum(valid) >= 2)
                & jnp.all(jnp.isfinite(accelerated))
                & admissible(accelerated, theta)
            )
            candidate = jnp.where(use_aa, accelerated, damped)
        else:
            use_aa = jnp.asarray(False)
            candidate = damped
        # After a stall, plain damped steps run until the best residual improves again.
        since = jnp.where(since >= 2 * _STALL, 0, since)
        # Keep x where it was evaluated when we stop, so that the returned point's residual is r.
        stop = (r <= tol) | bad
        return dict(
            step=st["step"] + 1,
            x=jnp.where(stop, x, candidate),
            aux=aux,
            eta=eta,
            r=r,
            bad=bad,
            from_aa=use_aa,
            r_best=r_best,
            since=since,
            hist=(X, G, valid, (slot + 1) % mem),
        )

    zeros = jnp.zeros((mem, n), dtype)
    init = dict(
        step=jnp.asarray(0),
        x=x0,
        aux=aux0,
        eta=eta0,
        r=inf,
        bad=jnp.asarray(False),
        from_aa=jnp.asarray(False),
        r_best=inf,
        since=jnp.asarray(0),
        hist=(zeros, zeros, jnp.zeros(mem, bool), jnp.asarray(0)),
    )
    st = jax.lax.while_loop(cond, body, init)
    x, r, bad = st["x"], st["r"], st["bad"]
    converged = r <= tol
    nan = ~jnp.all(jnp.isfinite(x)) | (bad & ~jnp.isfinite(r))
    result = RESULTS.where(
        converged,
        RESULTS.converged,
        RESULTS.where(nan, RESULTS.nan, RESULTS.where(bad, RESULTS.diverged, RESULTS.max_steps_reached)),
    )
    return x, st["aux"], st["step"], r, result


def fixed_point(
    F: Callable,
    theta,
    x0,
    aux0,
    *,
    tol,
    max_steps,
    damping,
    memory: int = 3,
    admissible: Callable = lambda x, theta: True,
):
    """Solve x = F(x, theta) from x0. Returns (x, aux, n_steps, residual, result).

    `F(x, theta, aux) -> (F(x), aux')` maps a 1-d float array to one of the same shape; `aux`
    is a pytree carried from one evaluation to the next that may only change how F(x) is
    computed (a warm start for inner solvers), not its value. `theta` is a pytree of float
    arrays (what derivatives are taken with respect to). `tol`, `max_steps` and `damping` are
    numbers or scalar arrays; `memory` (Anderson history length; 0 = plain damped iteration)
    is a Python int;
    `admissible(x, theta)` says whether an extrapolated point may be used (else the damped
    step is). F and admissible must not close over traced values: pass them in `theta`.
    """

    # The options travel as (non-differentiated) arguments, so that they may be traced values
    # (no recompilation when they change) without being closed over by the custom JVP.
    opts = (jnp.asarray(tol, x0.dtype), jnp.asarray(max_steps), jnp.asarray(damping, x0.dtype))

    @jax.custom_jvp
    def solve(theta, x0, aux0, opts):
        return _iterate(F, theta, x0, aux0, *opts, memory, admissible)

    def solve_jvp(primals, tangents):
        theta, x0, aux0, opts = primals
        dtheta = tangents[0]
        out = solve(theta, x0, aux0, opts)
        x, aux = out[0], out[1]

        def G(y, th):
            return F(y, th, aux)[0]

        Jx = jax.jacfwd(lambda y: G(y, theta))(x)
        _, dF = jax.jvp(lambda th: G(x, th), (theta,), (dtheta,))
        dx = jnp.linalg.solve(jnp.eye(x.shape[0], dtype=x.dtype) - Jx, dF)
        zero = lambda a: (  # noqa: E731
            jnp.zeros_like(a)
            if jnp.issubdtype(jnp.result_type(a), jnp.inexact)
            else np.zeros(np.shape(a), dtype=jax.dtypes.float0)
        )
        return out, (dx, *jax.tree.map(zero, out[1:]))

    solve.defjvp(solve_jvp)

    return solve(theta, x0, aux0, opts)

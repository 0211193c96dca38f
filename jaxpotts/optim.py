r"""A lean L-BFGS for full-batch pseudo-likelihood fits, as an optax transformation.

`lbfgs()` is limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, alg. 7.4 and
7.5) with a backtracking Armijo line search: the direction is $d = -H_k g$ from the two-loop
recursion over the last m pairs $(s_i, y_i)$, with $H_0 = \gamma I$,
$\gamma = s^\top y / y^\top y$; the step $t$ starts at 1 ($\min(1, 1/\|g\|_1)$ on the first
iteration, as minFunc/plmDCA do) and is shrunk by safeguarded quadratic interpolation until
$f(x + t d) \le f(x) + c_1 t\, g^\top d$; a unit step that is accepted but still too short
(Wolfe's curvature test $g(x+td)^\top d \ge c_2 g^\top d$ fails) is grown while f decreases,
which gives the first iterations the problem's scale: to the secant step
$t\,\phi'(0)/(\phi'(0) - \phi'(t))$, the minimiser of the quadratic with the slopes
$\phi'(0) = g^\top d$ and $\phi'(t) = g(x+td)^\top d$, kept between 4x and 64x the last step
(4x where the slope did not rise). On PF00014 the first iteration's search went 0.06 -> 3.9 ->
39 (3 evaluations) instead of 0.06 -> 0.24 -> 0.97 -> 3.9 -> 15.6 (5) with 4x steps. A pair is
stored only when $s^\top y > 0$.

Why not `optax.lbfgs`: for the convex, smooth objectives here the unit step is accepted at
almost every iteration, so one value-and-gradient evaluation per iteration suffices, and this
version needs nothing else per iteration beyond the two-loop recursion. optax's zoom line
search (strong Wolfe) compiled about 3x slower and ran 1.5-2x slower per iteration on
plmDCA-sized problems (1-6 million parameters) in our measurements; `optax.lbfgs()` can still
be passed to `jaxpotts.fit` as ``optimizer=``.

The state stores the objective value and gradient at the current parameters under the names
``value`` and ``grad``, so `optax.value_and_grad_from_state` reuses them (no second
evaluation), and the update needs ``value``, ``grad`` and ``value_fn`` as extra arguments,
like optax's line-search transformations. A failed line search returns a zero update and
keeps ``value`` (callers detect "no decrease").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .sharding import DATA_AXIS

__all__ = ["lbfgs", "LbfgsState"]

_EXPAND = 4.0  # least growth factor of a too-short step (at most _EXPAND**3)


class LbfgsState(NamedTuple):
    """count: pairs stored; s, y: pair memory (m, n) over the flattened parameters (ring buffer at
    count % m); rho: 1 / (s^T y) per slot; value, grad: at the current parameters (grad as a
    pytree like the parameters, for `optax.value_and_grad_from_state`)."""

    count: jax.Array
    s: Any
    y: Any
    rho: jax.Array
    value: jax.Array
    grad: Any


def _dot(a, b) -> jax.Array:
    """Inner product of two flat vectors at full precision (docs/accelerators.md)."""
    return jnp.vdot(a, b, precision=jax.lax.Precision.HIGHEST)


def _vdot(a, b) -> jax.Array:
    return sum(_dot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=False))


def _axpy(alpha, x, y):
    return jax.tree_util.tree_map(lambda xi, yi: alpha * xi + yi, x, y)


def _two_loop(g: jax.Array, state: LbfgsState, m: int) -> jax.Array:
    """$H_k g$ by the two-loop recursion over the stored pairs, newest first (flat vectors)."""
    k = state.count
    n = jnp.minimum(k, m)

    # Loops over the n stored pairs only (traced trip counts: while loops, no masked passes).
    def first(j, carry):
        r, alphas = carry
        i = (k - 1 - j) % m
        alpha = state.rho[i] * _dot(state.s[i], r)
        return r - alpha * state.y[i], alphas.at[i].set(alpha)

    r, alphas = jax.lax.fori_loop(0, n, first, (g, jnp.zeros((m,), state.rho.dtype)))
    newest = (k - 1) % m
    rho_new = state.rho[newest]
    yy = _dot(state.y[newest], state.y[newest])
    # gamma = s^T y / y^T y of the newest pair (H_0 = gamma I); 1 before the first pair.
    gamma = jnp.where((n > 0) & (yy > 0) & (rho_new > 0), 1.0 / jnp.where(rho_new > 0, rho_new * yy, 1.0), 1.0)
    r = gamma * r

    def second(j, r):
        i = (k - n + j) % m
        beta = state.rho[i] * _dot(state.y[i], r)
        return r + (alphas[i] - beta) * state.s[i]

    return jax.lax.fori_loop(0, n, second, r)


def _flat_size(params, mesh: Mesh | None) -> tuple[int, int]:
    """(n, padding): the number of parameters and the zeros that make it a multiple of the mesh size."""
    n = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))
    return n, (0 if mesh is None else -n % mesh.size)


def _flat_space(params, mesh: Mesh | None):
    """(to_flat, to_tree, size): the parameters as one vector, padded to a multiple of the mesh
    size and split over its devices, so that the memory and the two-loop recursion are too."""
    _, unravel = ravel_pytree(params)
    n, pad = _flat_size(params, mesh)
    sharding = None if mesh is None or mesh.size == 1 else NamedSharding(mesh, PartitionSpec(DATA_AXIS))

    def to_flat(tree):
        v = ravel_pytree(tree)[0]
        v = jnp.pad(v, (0, pad)) if pad else v
        return v if sharding is None else jax.lax.with_sharding_constraint(v, sharding)

    def to_tree(v):
        return unravel(v[:n] if pad else v)

    return to_flat, to_tree, n + pad


def _init_state(params, m: int, mesh: Mesh | None) -> LbfgsState:
    size = sum(_flat_size(params, mesh))  # (not ravel_pytree: that would build the vector)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    zeros = jnp.zeros((m, size), dtype)
    if mesh is not None and mesh.size > 1:
        zeros = jax.device_put(zeros, NamedSharding(mesh, PartitionSpec(None, DATA_AXIS)))
    return LbfgsState(
        count=jnp.zeros((), jnp.int32),
        s=zeros,
        y=zeros,
        rho=jnp.zeros((m,), dtype),
        value=jnp.asarray(jnp.inf, dtype),
        grad=jax.tree_util.tree_map(jnp.zeros_like, params),
    )


class _Search(NamedTuple):
    """What the line search reads but never changes: f(x), the slope $g^\top d$, the direction
    d as a pytree like the parameters, the parameters x, the objective and the constants."""

    value: jax.Array
    slope: jax.Array
    d_tree: Any
    params: Any
    value_fn: Callable
    c1: float
    c2: float
    max_linesearch_steps: int
    max_expansions: int


def _search_step(k: _Search, c):
    """One evaluation of the line search (`_line_search`): try `t_try`, then accept, shrink or grow."""
    n, phase, t_try, t, f_t, g_t, accepted, stop = c
    f_try, g_try = jax.value_and_grad(k.value_fn)(_axpy(t_try, k.d_tree, k.params))
    ok = jnp.isfinite(f_try) & (f_try <= k.value + k.c1 * t_try * k.slope)
    better = jnp.isfinite(f_try) & (f_try < f_t)
    take = jnp.where(phase == 0, ok, better)
    t = jnp.where(take, t_try, t)
    f_t = jnp.where(take, f_try, f_t)
    g_t = jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), g_try, g_t)
    accepted = accepted | (take & (phase == 0))
    slope_t = _vdot(g_t, k.d_tree)
    steep = slope_t < k.c2 * k.slope
    # Grow after an accepted unshrunk first step, or after a successful growth.
    grow = take & steep & jnp.where(phase == 0, n == 0, n + 1 < k.max_expansions)
    # Shrink by safeguarded quadratic interpolation: the minimiser of the quadratic through
    # f(0), f'(0) and f(t_try), kept within [0.1 t_try, 0.5 t_try].
    denom = 2.0 * (f_try - k.value - k.slope * t_try)
    t_q = jnp.where(
        jnp.isfinite(f_try) & (denom > 0),
        -k.slope * t_try * t_try / jnp.where(denom > 0, denom, 1.0),
        0.5 * t_try,
    )
    shrink = (phase == 0) & ~ok & (n < k.max_linesearch_steps)
    # Grow to the secant step (the slope's zero by linear interpolation from 0 to t), 4-64x t.
    rise = slope_t - k.slope
    t_sec = t * k.slope / jnp.where(rise > 0, -rise, -1.0)
    t_grow = jnp.where(rise > 0, jnp.clip(t_sec, _EXPAND * t, _EXPAND**3 * t), _EXPAND * t)
    t_next = jnp.where(grow, t_grow, jnp.clip(t_q, 0.1 * t_try, 0.5 * t_try))
    n_next = jnp.where(grow & (phase == 0), 0, n + 1)  # phase 1 counts its evaluations from 0
    phase = jnp.where(grow, 1, phase)
    return n_next, phase, t_next.astype(t_try.dtype), t, f_t, g_t, accepted, ~(grow | shrink)


def _line_search(k: _Search, t0: jax.Array, grad):
    """(t, f(x + t d), grad f(x + t d) as a pytree, accepted) of the backtracking/growing search.

    One loop, one call site of the objective (compiled once, not once per phase). Phase 0
    backtracks from t0: an Armijo-acceptable step ends it, and an accepted *first* step that is
    still steep along d (Wolfe's curvature test fails: the step is too short, as before gamma has
    the problem's scale) moves to phase 1, which grows the step (secant step, 4-64x) while f keeps
    decreasing. `grad` (the gradient at x) gives the pytree structure of the gradients."""
    zero = jnp.zeros((), jnp.int32)
    start = (
        zero,
        zero,
        t0,
        jnp.zeros_like(t0),
        jnp.asarray(jnp.inf, k.slope.dtype) + 0 * k.value,
        jax.tree_util.tree_map(jnp.zeros_like, grad),
        jnp.asarray(False),
        jnp.asarray(False),
    )
    _, _, _, t, f_new, g_new, accepted, _ = jax.lax.while_loop(lambda c: ~c[-1], partial(_search_step, k), start)
    return t, f_new, g_new, accepted


def lbfgs(
    memory_size: int = 10,
    *,
    mesh: Mesh | None = None,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_linesearch_steps: int = 20,
    max_expansions: int = 8,
) -> optax.GradientTransformationExtraArgs:
    r"""L-BFGS with a backtracking Armijo line search (module docstring).

    Args:
        memory_size: number m of stored (s, y) pairs.
        c1: sufficient-decrease constant of the Armijo condition.
        c2: curvature constant: an accepted unit step with $g(x + t d)^\top d < c_2\, g^\top d$
            (still steep) is grown (secant step, 4-64x) while f keeps decreasing, up to
            `max_expansions` times.
        max_linesearch_steps: evaluations tried per iteration before giving up (zero update).
        mesh: a `jaxpotts.sharding.data_mesh()`: the memory and the recursion work on a flat
            parameter vector split over its devices (each device does 1/n of the vector work),
            instead of every device repeating it. None: one device.

    Returns:
        An optax transformation; `update(grad, state, params, value=, grad=, value_fn=)`.
    """
    if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 1:
        raise ValueError(f"memory_size must be a positive integer, got {memory_size!r}")
    if not 0.0 < c1 < c2 < 1.0:
        raise ValueError(f"need 0 < c1 < c2 < 1, got c1={c1!r}, c2={c2!r}")
    m = memory_size

    def init(params) -> LbfgsState:
        return _init_state(params, m, mesh)

    def update(updates, state: LbfgsState, params=None, *, value, grad, value_fn: Callable, **extra):
        del updates  # the gradient arrives as `grad`
        to_flat, to_tree, _ = _flat_space(params, mesh)
        g = to_flat(grad)
        d = -_two_loop(g, state, m)
        slope = _dot(g, d)
        # Not a descent direction (rounding): fall back to steepest descent.
        bad = ~(slope < 0)
        d = jnp.where(bad, -g, d)
        slope = jnp.where(bad, -_dot(g, g), slope)
        t0 = jnp.where(state.count == 0, jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.sum(jnp.abs(g)), 1e-30)), 1.0)
        t0 = t0.astype(slope.dtype)
        d_tree = to_tree(d)
        search = _Search(value, slope, d_tree, params, value_fn, c1, c2, max_linesearch_steps, max_expansions)
        t, f_new, g_new, accepted = _line_search(search, t0, grad)
        f_new = jnp.where(accepted, f_new, value)

        step = t * d
        y = to_flat(g_new) - g
        sy = _dot(step, y)
        store = accepted & (sy > 1e-10 * jnp.sqrt(_dot(y, y) * _dot(step, step)))
        # Only the written slot is touched (a select over the whole memory would copy it).
        slot = state.count % m

        def put(memory, v):
            return memory.at[slot].set(jnp.where(store, v, memory[slot]))

        new_state = LbfgsState(
            count=state.count + store.astype(state.count.dtype),
            s=put(state.s, step),
            y=put(state.y, y),
            rho=state.rho.at[slot].set(jnp.where(store, 1.0 / jnp.where(sy > 0, sy, 1.0), state.rho[slot])),
            value=jnp.where(accepted, f_new, value).astype(f_new.dtype),
            grad=jax.tree_util.tree_map(lambda a, b: jnp.where(accepted, a, b), g_new, grad),
        )
        out = jax.tree_util.tree_map(lambda x: jnp.where(accepted, t * x, jnp.zeros_like(x)), d_tree)
        return out, new_state

    return optax.GradientTransformationExtraArgs(init, update)

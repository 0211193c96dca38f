"""Tests for jaxpotts.optim.lbfgs: minimisers of known functions, one evaluation per iteration
on a smooth convex problem, and a clean failure when no step decreases the objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpotts.optim import lbfgs


def run(fn, params, n, opt=None, count=None):
    opt = opt or lbfgs()
    state = opt.init(params)
    vg = optax.value_and_grad_from_state(fn)

    @jax.jit
    def step(p, s):
        v, g = vg(p, state=s)
        u, s = opt.update(g, s, p, value=v, grad=g, value_fn=fn)
        return optax.apply_updates(p, u), s, v

    for _ in range(n):
        params, state, value = step(params, state)
    return params, state, value


def test_rosenbrock(x64):
    rosen = lambda p: jnp.sum(100 * (p["x"][1:] - p["x"][:-1] ** 2) ** 2 + (1 - p["x"][:-1]) ** 2)
    p, state, v = run(rosen, {"x": jnp.full(8, -1.2)}, 300)
    np.testing.assert_allclose(p["x"], np.ones(8), atol=1e-8)
    assert float(state.value) < 1e-16


def test_quadratic_with_pytree_params_and_one_evaluation_per_iteration(x64):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(12, 12))
    A = jnp.asarray(A @ A.T + 12 * np.eye(12))
    b = jnp.asarray(rng.normal(size=12))
    calls = []

    def fn(p):
        x = jnp.concatenate([p[0], p[1].ravel()])
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * x @ A @ x - b @ x

    p, state, v = run(fn, (jnp.zeros(4), jnp.zeros((2, 4))), 8)
    # the first value comes from value_and_grad_from_state (inf in a fresh state), then one
    # trial point per iteration on this well-conditioned quadratic (a few extra at the start)
    assert len(calls) <= 8 + 1 + 3, len(calls)
    p, state, v = run(fn, (jnp.zeros(4), jnp.zeros((2, 4))), 40)
    x = np.concatenate([p[0], np.ravel(p[1])])
    np.testing.assert_allclose(x, np.linalg.solve(A, b), atol=1e-9)


def test_a_too_short_first_step_grows_to_the_secant_step(x64):
    # f = |x - 1|^2 / 2 from 0: g = -1, t0 = 1/|g|_1 = 0.01 along d = 1, the line minimum at t = 1.
    # phi'(0.01) = -99 < c2 phi'(0) = -90 (still steep): the secant step, t = 1, is clipped to
    # 64 x 0.01 = 0.64, where phi' = -36 ends the growth: 2 evaluations (4x steps: 0.04, 0.16,
    # 0.64 would take 4).
    calls = []

    def fn(x):
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * jnp.sum((x - 1.0) ** 2)

    x = jnp.zeros(100)
    opt = lbfgs()
    state = opt.init(x)
    v, g = jax.value_and_grad(fn)(x)
    calls.clear()
    u, state = opt.update(g, state, x, value=v, grad=g, value_fn=fn)
    assert len(calls) == 2, len(calls)
    np.testing.assert_allclose(u, np.full(100, 0.64), rtol=1e-12)


def test_failed_line_search_returns_zero_update_and_keeps_value(x64):
    # Finite only at the start: every trial point is NaN, so no step can be accepted.
    fn = lambda x: jnp.where(jnp.all(x == 0.0), jnp.sum((x - 1.0) ** 2), jnp.nan)
    opt = lbfgs(max_linesearch_steps=5)
    x = jnp.zeros(3)
    state = opt.init(x)
    v, g = jax.value_and_grad(fn)(x)
    u, state = opt.update(g, state, x, value=v, grad=g, value_fn=fn)
    np.testing.assert_array_equal(u, np.zeros(3))
    assert float(state.value) == float(v) and int(state.count) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="memory_size"):
        lbfgs(0)
    with pytest.raises(ValueError, match="c1"):
        lbfgs(c1=1.5)
    with pytest.raises(ValueError, match="c1"):
        lbfgs(c1=0.5, c2=0.4)

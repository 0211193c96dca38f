"""Tests for jaxpotts.exact against brute-force numpy enumeration (itertools.product).

Sizes are small and few (each (model type, L, q, statistic, chunk size) compiles once).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from jaxpotts import exact, potts
from jaxpotts.potts import FactoredPotts, PottsModel

# The `x64` fixture (float64 enabled for one test) comes from conftest.py.


# ----------------------------------------------------------------------------- reference


def dense_np(model):
    h = np.asarray(model.fields, np.float64)
    if isinstance(model, FactoredPotts):
        J = np.asarray(model.J, np.float64)[:, :, None, None] * np.asarray(model.U, np.float64)[None, None]
    else:
        J = np.asarray(model.couplings, np.float64)
    return h, J


def brute_force(model, beta):
    """Everything by explicit enumeration in float64, straight from the formulas of docs/theory.md
    section 1 ("The generalized Potts model")."""
    h, J = dense_np(model)
    L, q = h.shape
    S = np.array(list(itertools.product(range(q), repeat=L)))  # lexicographic, site 0 first
    E = -h[np.arange(L), S].sum(axis=1)
    for i in range(L):
        for j in range(i + 1, L):
            E -= J[i, j, S[:, i], S[:, j]]
    log_w = -beta * E
    log_z = logsumexp(log_w)
    p = np.exp(log_w - log_z)
    X = np.eye(q)[S]  # (n, L, q)
    # p(s_i = a | s_-i) = softmax_a(beta [h_i(a) + sum_{j != i} J_ij(a, s_j)])
    offdiag = (1 - np.eye(L))[:, :, None, None]
    phi = h[None] + np.einsum("ijab,njb->nia", J * offdiag, X)
    z = beta * phi
    log_cond = z - logsumexp(z, axis=-1, keepdims=True)
    nll = -np.take_along_axis(log_cond, S[:, :, None], axis=-1)[:, :, 0]
    return {
        "states": S,
        "energy": E,
        "log_z": log_z,
        "p": p,
        "marginals": np.einsum("n,nia->ia", p, X),
        "pairs": np.einsum("n,nia,njb->ijab", p, X, X),
        "site_entropies": p @ nll,
    }


# ----------------------------------------------------------------------------- models


def _models():
    # (5, 3) as in test_potts.py, so the two files share compilations of the constructors.
    k = jax.random.split(jax.random.key(0), 3)
    return {
        "dense-5x3": potts.random_dense_potts(k[0], 5, 3, coupling_scale=1.5),
        "factored-gaussian-random-5x3": potts.random_factored_potts(k[1], 5, 3, coupling_scale=1.5),
        "factored-er-potts-6x2": potts.random_factored_potts(
            k[2], 6, 2, graph="erdos_renyi", colours="potts", mean_degree=2.0
        ),
    }


MODELS = _models()
IDS = list(MODELS)


def _as_float64(model):
    return type(model)(*[np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(model)])


def _nonsymmetric():
    dense = MODELS["dense-5x3"]
    C = np.array(dense.couplings)
    C[0, 2, 1, 0] += 0.3
    fac = MODELS["factored-gaussian-random-5x3"]
    U = np.array(fac.U)
    U[0, 2] += 0.3
    return {"dense": PottsModel(dense.fields, C), "factored": FactoredPotts(fac.fields, fac.J, U)}


# ----------------------------------------------------------------------------- states


def test_states_order_and_count():
    np.testing.assert_array_equal(
        exact.states(2, 3), [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2]]
    )
    s = exact.states(4, 3)
    assert s.shape == (81, 4) and s.dtype == jnp.int32
    np.testing.assert_array_equal(s, list(itertools.product(range(3), repeat=4)))
    assert exact.states(20, 2).shape == (2**20, 20)  # the limit itself is allowed
    assert exact.states(1, 5).shape == (5, 1)


def test_states_bad_arguments():
    with pytest.raises(ValueError, match=r"q\*\*L = 2\*\*21 = 2097152 .*exceeds the limit MAX_STATES = 1048576"):
        exact.states(21, 2)
    with pytest.raises(ValueError, match="L must be an integer >= 1, got 0"):
        exact.states(0, 3)
    with pytest.raises(ValueError, match="q must be an integer >= 2, got 1"):
        exact.states(3, 1)
    with pytest.raises(ValueError, match="L must be an integer >= 1, got 2.0"):
        exact.states(2.0, 3)


# ----------------------------------------------------------------------------- against brute force


@pytest.mark.parametrize("name", ["dense-5x3", "factored-gaussian-random-5x3"])
def test_against_brute_force(name):
    model, beta = MODELS[name], 0.7
    ref = brute_force(model, beta)
    tol = dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(exact.log_partition(model, beta), ref["log_z"], **tol)
    s, p = exact.probabilities(model, beta)
    np.testing.assert_array_equal(s, ref["states"])
    np.testing.assert_allclose(p, ref["p"], **tol)
    np.testing.assert_allclose(jnp.sum(p), 1.0, rtol=1e-5)
    s, log_p = exact.log_probabilities(model, beta)
    np.testing.assert_allclose(log_p, np.log(ref["p"]), rtol=2e-5, atol=2e-5)
    marg = exact.marginals(model, beta)
    np.testing.assert_allclose(marg, ref["marginals"], **tol)
    np.testing.assert_allclose(marg.sum(axis=1), 1.0, rtol=1e-5)
    pairs = exact.pair_marginals(model, beta)
    np.testing.assert_allclose(pairs, ref["pairs"], **tol)
    np.testing.assert_allclose(pairs.sum(axis=3), np.broadcast_to(marg[:, None], pairs.shape[:3]), **tol)
    H = exact.site_conditional_entropies(model, beta)
    np.testing.assert_allclose(H, ref["site_entropies"], **tol)
    np.testing.assert_allclose(exact.conditional_entropy(model, beta), ref["site_entropies"].mean(), **tol)
    # A conditional entropy lies between 0 and log q.
    assert np.all((np.asarray(H) > 0) & (np.asarray(H) < np.log(model.q)))


@pytest.mark.parametrize("beta", [0.0, -0.8, 1.0, 2.5])
def test_log_partition_and_marginals_any_beta(beta):
    """beta is traced: no recompilation per value, and any finite sign is allowed."""
    model = MODELS["factored-gaussian-random-5x3"]
    ref = brute_force(model, beta)
    np.testing.assert_allclose(exact.log_partition(model, beta), ref["log_z"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(exact.marginals(model, beta), ref["marginals"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(
        exact.site_conditional_entropies(model, beta), ref["site_entropies"], rtol=2e-5, atol=2e-6
    )
    if beta == 0.0:
        np.testing.assert_allclose(exact.log_partition(model, beta), model.L * np.log(model.q), rtol=1e-6)
        np.testing.assert_allclose(exact.conditional_entropy(model, beta), np.log(model.q), rtol=1e-5)


def test_factored_equals_dense():
    model = MODELS["factored-gaussian-random-5x3"]
    dense = potts.to_dense(model)
    np.testing.assert_allclose(exact.log_partition(model, 1.2), exact.log_partition(dense, 1.2), rtol=1e-6)
    np.testing.assert_allclose(exact.marginals(model, 1.2), exact.marginals(dense, 1.2), rtol=1e-5, atol=1e-7)


def test_independent_sites_closed_form():
    """J = 0: Z factorises, p_i = softmax(beta h_i), and H_i is the entropy of p_i."""
    base = MODELS["factored-gaussian-random-5x3"]
    model = FactoredPotts(base.fields, jnp.zeros_like(base.J), base.U)
    beta = 1.3
    z = beta * np.asarray(base.fields, np.float64)
    p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    np.testing.assert_allclose(exact.log_partition(model, beta), logsumexp(z, axis=1).sum(), rtol=1e-6)
    np.testing.assert_allclose(exact.marginals(model, beta), p, rtol=1e-5)
    np.testing.assert_allclose(exact.site_conditional_entropies(model, beta), -(p * np.log(p)).sum(axis=1), rtol=1e-5)
    pairs = np.asarray(exact.pair_marginals(model, beta))
    np.testing.assert_allclose(pairs[0, 1], np.outer(p[0], p[1]), rtol=1e-5)
    np.testing.assert_allclose(pairs[2, 2], np.diag(p[2]), rtol=1e-5, atol=1e-7)


def test_single_site():
    h = np.array([[0.3, -1.0, 2.0]], np.float32)
    model = PottsModel(h, np.zeros((1, 1, 3, 3), np.float32))
    np.testing.assert_allclose(exact.log_partition(model, 0.5), logsumexp(0.5 * h[0]), rtol=1e-6)
    np.testing.assert_array_equal(exact.states(1, 3), [[0], [1], [2]])


@pytest.mark.slow
def test_at_the_size_limit():
    """q**L = 2**20 = MAX_STATES, 256 chunks: independent sites, so everything is closed-form."""
    L, q, beta = 20, 2, 0.9
    h = np.asarray(jax.random.normal(jax.random.key(3), (L, q)))
    model = FactoredPotts(h, np.zeros((L, L), np.float32), np.eye(q, dtype=np.float32))
    z = beta * h.astype(np.float64)
    p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    np.testing.assert_allclose(exact.log_partition(model, beta), logsumexp(z, axis=1).sum(), rtol=1e-5)
    np.testing.assert_allclose(exact.marginals(model, beta), p, rtol=1e-4)
    np.testing.assert_allclose(exact.site_conditional_entropies(model, beta), -(p * np.log(p)).sum(axis=1), rtol=1e-4)
    s, probs = exact.probabilities(model, beta)
    assert s.shape == (2**20, 20)
    np.testing.assert_allclose(jnp.sum(probs), 1.0, rtol=1e-4)


def test_large_energies_are_stable():
    """|beta E| ~ 1e3 overflows a naive sum of exponentials in float32; the streaming one does not."""
    base = MODELS["dense-5x3"]
    model = PottsModel(100 * base.fields, 100 * base.couplings)
    for beta in (1.0, -1.0):
        ref = brute_force(model, beta)
        assert abs(ref["log_z"]) > 100
        np.testing.assert_allclose(exact.log_partition(model, beta), ref["log_z"], rtol=1e-6)
        np.testing.assert_allclose(exact.marginals(model, beta), ref["marginals"], atol=1e-5)


@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_chunk_size_does_not_change_results(chunk_size):
    """7 does not divide 3**5 = 243 (padded last chunk); 1000 > 243 is clipped to one chunk."""
    model = MODELS["dense-5x3"]
    ref = brute_force(model, 0.9)
    tol = dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(exact.log_partition(model, 0.9, chunk_size=chunk_size), ref["log_z"], **tol)
    np.testing.assert_allclose(exact.pair_marginals(model, 0.9, chunk_size=chunk_size), ref["pairs"], **tol)
    np.testing.assert_allclose(exact.probabilities(model, 0.9, chunk_size=chunk_size)[1], ref["p"], **tol)


# ----------------------------------------------------------------------------- float64


@pytest.mark.parametrize("name", ["dense-5x3", "factored-gaussian-random-5x3"])
def test_float64(x64, name):
    model = _as_float64(MODELS[name])
    beta = 0.8
    ref = brute_force(model, beta)
    tol = dict(rtol=1e-12, atol=1e-12)
    log_z = exact.log_partition(model, beta, chunk_size=16)  # 16 chunks, the last one padded
    assert log_z.dtype == jnp.float64
    np.testing.assert_allclose(log_z, ref["log_z"], **tol)
    np.testing.assert_allclose(exact.pair_marginals(model, beta, chunk_size=16), ref["pairs"], **tol)
    if name.startswith("dense"):  # the remaining code paths do not depend on the model type
        np.testing.assert_allclose(exact.probabilities(model, beta)[1], ref["p"], **tol)
        np.testing.assert_allclose(exact.marginals(model, beta, chunk_size=16), ref["marginals"], **tol)
    np.testing.assert_allclose(
        exact.site_conditional_entropies(model, beta, chunk_size=16), ref["site_entropies"], **tol
    )


def test_float32_by_default():
    model = MODELS["dense-5x3"]
    assert exact.log_partition(model).dtype == jnp.float32
    assert exact.marginals(model).dtype == jnp.float32


# ----------------------------------------------------------------------------- transformations


def test_gradients():
    """d log Z / d h_i(a) = beta p_i(a) and d log Z / d beta = -<E>."""
    model, beta = MODELS["factored-er-potts-6x2"], 0.6
    ref = brute_force(model, beta)
    grad = jax.grad(exact.log_partition)(model, beta)
    np.testing.assert_allclose(grad.fields, beta * ref["marginals"], rtol=1e-4, atol=1e-6)
    d_beta = jax.grad(lambda b: exact.log_partition(model, b))(beta)
    np.testing.assert_allclose(d_beta, -ref["p"] @ ref["energy"], rtol=1e-4, atol=1e-6)


def test_jit_and_vmap():
    model = MODELS["factored-er-potts-6x2"]
    betas = jnp.array([0.2, 1.0, 1.7])
    ref = [brute_force(model, float(b))["log_z"] for b in betas]
    np.testing.assert_allclose(jax.vmap(lambda b: exact.log_partition(model, b))(betas), ref, rtol=2e-5)
    np.testing.assert_allclose(jax.jit(exact.log_partition)(model, betas[1]), ref[1], rtol=2e-5)


def test_no_retrace_for_same_sizes():
    cache_size = getattr(exact._enumerate, "_cache_size", None)
    if cache_size is None:
        pytest.skip("this jax version does not expose the jit cache size")
    k1, k2 = jax.random.split(jax.random.key(1))
    a = potts.random_factored_potts(k1, 6, 2, graph="erdos_renyi", colours="potts", mean_degree=2.0)
    b = potts.random_factored_potts(k2, 6, 2, graph="erdos_renyi", colours="potts", mean_degree=2.0)
    exact.log_partition(a, 0.5)
    before = cache_size()
    exact.log_partition(b, 0.5)
    exact.log_partition(a, 2)  # an int beta is cast to the model's dtype
    exact.log_partition(b, np.float64(1.5))
    exact.log_partition(a, jnp.asarray(0.3))
    assert cache_size() == before


def _jaxpr_shapes(jaxpr):
    """Shapes of every variable in a jaxpr and its sub-jaxprs (scan bodies, nested jits)."""
    for v in list(jaxpr.invars) + list(jaxpr.constvars):
        yield v.aval.shape
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield v.aval.shape
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _jaxpr_shapes(inner)


@pytest.mark.parametrize("want", [(), ("site",), ("nll",)])
def test_factored_never_builds_dense_couplings(want):
    """No intermediate as large as the (L, L, q, q) couplings; the dense model is the control."""
    factored = MODELS["factored-gaussian-random-5x3"]
    L, q = factored.L, factored.q
    chunk = 4  # chunk * L * L < L * L * q * q, so only densified couplings could reach that size

    def largest(model):
        closed = jax.make_jaxpr(lambda m: exact._enumerate(m, jnp.float32(1.0), chunk_size=chunk, want=want))(model)
        return max(int(np.prod(shape)) for shape in _jaxpr_shapes(closed.jaxpr) if len(shape) > 1)

    assert largest(factored) < L * L * q * q
    assert largest(potts.to_dense(factored)) >= L * L * q * q


# ----------------------------------------------------------------------------- errors

PUBLIC = [
    exact.log_partition,
    exact.probabilities,
    exact.log_probabilities,
    exact.marginals,
    exact.pair_marginals,
    exact.conditional_entropy,
    exact.site_conditional_entropies,
]


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_too_large_refused(fn):
    fac = FactoredPotts(jnp.zeros((21, 2)), jnp.zeros((21, 21)), jnp.eye(2))
    with pytest.raises(ValueError, match=r"q\*\*L = 2\*\*21 = 2097152 sequences exceeds the limit MAX_STATES"):
        fn(fac)
    dense = PottsModel(jnp.zeros((5, 17)), jnp.zeros((5, 5, 17, 17)))
    with pytest.raises(ValueError, match=r"q\*\*L = 17\*\*5 = 1419857"):
        fn(dense)


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", ["dense", "factored"])
def test_nonsymmetric_refused(fn, kind):
    with pytest.raises(ValueError, match="exact enumeration needs a joint model.*not symmetric"):
        fn(NONSYMMETRIC[kind])


NONSYMMETRIC = _nonsymmetric()


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_bad_beta_and_chunk_size(fn):
    model = MODELS["dense-5x3"]
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="beta must be finite"):
            fn(model, bad)
    with pytest.raises(ValueError, match=r"beta must be a scalar, got shape \(2,\)"):
        fn(model, [1.0, 2.0])
    for bad in ("hot", True, 1j):
        with pytest.raises(TypeError, match="beta must be a real number"):
            fn(model, bad)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            fn(model, 1.0, chunk_size=bad)


def test_not_a_model():
    with pytest.raises(TypeError, match="expected a PottsModel or FactoredPotts, got ndarray"):
        exact.log_partition(np.zeros((3, 2)))

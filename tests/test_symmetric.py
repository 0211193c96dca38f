"""Symmetric pseudo-likelihood (``couplings="symmetric"``: one coupling per pair, plmc / CCMpred).

Ground truth: a direct float64 loop over sequences and sites of the pseudo-likelihood of the
symmetric couplings J_ij(a,b) = [W_ij(a,b) + W_ji(b,a)] / 2 (gaps as a state, or as missing data
over the non-gap colours), plus plmc's prior lambda_J sum_{i<j} ||J_ij||^2 + lambda_h ||h||^2
(src/inference.c, PLMNegLogPosterior); central finite differences of that direct objective for
the gradient with respect to a shared pair coupling, against G_ij + G_ji^T of the asymmetric
gradient; stationarity of fitted models under the direct objective's autodiff gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import pseudo_likelihood_sum

from jaxpotts import engine, mutations, training
from jaxpotts.potts import PottsModel


def direct_objective(h, J, seqs, w, l2, l2_fields, gap=None):
    """Weighted mean of sum_i -log p_i(s_i | s_-i) + lambda_J sum_{i<j} ||J_ij||^2 + lambda_h ||h||^2."""
    total = pseudo_likelihood_sum(h, J, seqs, w, gap)
    h, J, w = (np.asarray(x, np.float64) for x in (h, J, w))
    L = h.shape[0]
    pairs = sum(np.sum(J[i, j] ** 2) for i in range(L) for j in range(i + 1, L))
    return total / w.sum() + l2 * pairs + l2_fields * np.sum(h**2)


def symmetric_part(W):
    W = np.asarray(W, np.float64)
    return 0.5 * (W + W.transpose(1, 0, 3, 2)) * (1 - np.eye(W.shape[0]))[:, :, None, None]


def problem(rng, M, L, q, gap_rate=0.0):
    h = rng.normal(size=(L, q))
    W = rng.normal(size=(L, L, q, q)) * (1 - np.eye(L))[:, :, None, None]
    seqs = rng.integers(1 if gap_rate else 0, q, size=(M, L))
    if gap_rate:
        seqs = np.where(rng.random((M, L)) < gap_rate, 0, seqs)
    w = rng.uniform(0.5, 1.5, size=M)
    return h, W, seqs, w


def engine_objective(model, seqs, w, l2, l2_fields, gaps="state", couplings="symmetric"):
    """The engine's minimised objective F / L, times L, as a function of the trainable parameters."""
    config = engine.FitConfig.from_options(l2=l2, l2_fields=l2_fields, gaps=gaps, couplings=couplings)
    net, _ = engine.trainable(model, couplings)
    prob, state = engine.init(net, seqs, w, config)
    L = model.L

    def f(params):
        return engine.objective(params, prob, prob.seqs, prob.weights, jax.random.PRNGKey(0))[0] * L

    return f, state.params


@pytest.mark.parametrize("gaps", ["state", "missing"])
def test_objective_equals_direct_symmetric_pl(x64, gaps):
    rng = np.random.default_rng(1)
    h, W, seqs, w = problem(rng, 9, 4, 3, gap_rate=0.3 if gaps == "missing" else 0.0)
    if gaps == "missing":  # the gap's parameters do not enter; zero them for the direct prior
        h[:, 0], W[:, :, 0, :], W[:, :, :, 0] = 0, 0, 0
    l2, l2_fields = 0.3, 0.05
    f, params = engine_objective(PottsModel(jnp.asarray(h), jnp.asarray(W)), seqs, w, l2, l2_fields, gaps)
    expected = direct_objective(h, symmetric_part(W), seqs, w, l2, l2_fields, gap=0 if gaps == "missing" else None)
    np.testing.assert_allclose(float(f(params)), expected, rtol=1e-11)
    # The asymmetric objective at the same (already symmetric) J is the same number.
    g, p_asym = engine_objective(PottsModel(jnp.asarray(h), jnp.asarray(symmetric_part(W))), seqs, w, l2, l2_fields,
                                 gaps, couplings="asymmetric")  # fmt: skip
    np.testing.assert_allclose(float(g(p_asym)), expected, rtol=1e-11)


def test_gradient_of_a_shared_coupling_is_g_ij_plus_g_ji_transposed(x64):
    rng = np.random.default_rng(2)
    L, q = 4, 3
    h, W, seqs, w = problem(rng, 8, L, q)
    J = symmetric_part(W)
    l2, l2_fields = 0.2, 0.1
    f_sym, p_sym = engine_objective(PottsModel(jnp.asarray(h), jnp.asarray(J)), seqs, w, l2, l2_fields)
    f_asym, p_asym = engine_objective(
        PottsModel(jnp.asarray(h), jnp.asarray(J)), seqs, w, l2, l2_fields, couplings="asymmetric"
    )
    G = np.asarray(jax.grad(f_asym)(p_asym).couplings)
    gW = np.asarray(jax.grad(f_sym)(p_sym).couplings)
    eps = 1e-5
    for i, j in [(0, 1), (2, 0), (1, 3)]:
        shared = G[i, j] + G[j, i].T
        # W_ij enters J_ij and J_ji^T with weight 1/2 each.
        np.testing.assert_allclose(2 * gW[i, j], shared, rtol=1e-10, atol=1e-12)
        E = rng.normal(size=(q, q))
        step = np.zeros_like(J)
        step[i, j], step[j, i] = E, E.T

        def direct(x, step=step):
            return direct_objective(h, J + x * step, seqs, w, l2, l2_fields)

        fd = (direct(eps) - direct(-eps)) / (2 * eps)
        np.testing.assert_allclose(np.sum(shared * E), fd, rtol=1e-6, atol=1e-8)
    assert np.all(gW[np.arange(L), np.arange(L)] == 0)  # diagonal blocks get no gradient


def test_site_logits_use_the_symmetric_couplings(x64):
    rng = np.random.default_rng(3)
    h, W, seqs, _ = problem(rng, 3, 5, 4)
    net, _ = engine.trainable(PottsModel(jnp.asarray(h), jnp.asarray(W)), "symmetric")
    J = symmetric_part(W)
    s = jnp.asarray(seqs[0])
    expected = h + np.einsum("ijab,jb->ia", J, np.eye(4)[seqs[0]])
    np.testing.assert_allclose(net(s), expected, rtol=1e-12)
    for i in range(5):
        np.testing.assert_allclose(net.site_logits(s, i), expected[i], rtol=1e-12)


@pytest.mark.parametrize("gaps", [pytest.param("state", marks=pytest.mark.slow), "missing"])
def test_fit_is_exactly_symmetric_and_stationary(x64, gaps):
    rng = np.random.default_rng(4)
    L, q = 4, 4
    _, _, seqs, w = problem(rng, 40, L, q, gap_rate=0.25 if gaps == "missing" else 0.0)
    l2, l2_fields = 0.05, 0.01
    model, hist = training.fit_plm(
        seqs, q=q, weights=w, l2=l2, l2_fields=l2_fields, gaps=gaps, couplings="symmetric", ftol=0, tol=1e-9
    )
    assert hist.converged
    J = np.asarray(model.couplings)
    assert np.array_equal(J, J.transpose(1, 0, 3, 2))
    assert np.all(J[np.arange(L), np.arange(L)] == 0)
    # Stationary for the symmetric objective: gradient w.r.t. every shared coupling and field ~ 0 ...
    f, params = engine_objective(model, seqs, w, l2, l2_fields, gaps)
    grad = jax.grad(f)(params)
    assert np.abs(grad.couplings).max() < 1e-6 and np.abs(grad.fields).max() < 1e-6
    # ... but not for the asymmetric one (the conditionals are coupled), whose fit differs.
    f_a, p_a = engine_objective(model, seqs, w, l2, l2_fields, gaps, couplings="asymmetric")
    assert np.abs(jax.grad(f_a)(p_a).couplings).max() > 1e-3


def test_default_is_the_asymmetric_fit():
    rng = np.random.default_rng(5)
    _, _, seqs, w = problem(rng, 30, 4, 3)
    assert engine.FitConfig().optimization.couplings == "asymmetric"
    assert type(engine.trainable(PottsModel(jnp.zeros((4, 3)), jnp.zeros((4, 4, 3, 3))))[0]) is engine.DenseConditionals
    a, _ = training.fit_plm(seqs, q=3, weights=w, n_steps=15)
    b, _ = training.fit_plm(seqs, q=3, weights=w, n_steps=15, couplings="asymmetric")
    assert np.array_equal(a.couplings, b.couplings) and np.array_equal(a.fields, b.fields)
    assert not np.array_equal(a.couplings, a.couplings.transpose(1, 0, 3, 2))


def test_clear_errors_and_plumbing():
    with pytest.raises(ValueError, match="couplings must be one of"):
        engine.FitConfig.from_options(couplings="tied")
    from jaxpotts.attention import FactoredAttention

    layer = FactoredAttention(4, 3, 1, 2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="applies to dense Potts fits"):
        engine.trainable(layer, "symmetric")
    assert mutations.plm_settings(10, 21, 100.0)["couplings"] == mutations.MUTATION_DEFAULTS["couplings"]
    assert mutations.plm_settings(10, 21, 100.0, couplings="symmetric")["couplings"] == "symmetric"

"""Tests for jaxpotts.losses: MLM = pseudo-likelihood (docs/mlm_equals_pl.md), the stochastic MLM
estimate, the L2 convention (docs/conventions.md) and input errors.

    L * mlm_loss(fa, seqs, w) == pseudo_likelihood(fa.to_potts(), seqs, w)      (any parameters, data, weights)
    E_key[stochastic_mlm_loss(model, seqs, key, w)] == mlm_loss(model, seqs, w)
    l2_penalty(model, lam_J, lam_h) = lam_J/2 sum_{i != j} |J_ij|_F^2 + lam_h sum_i |h_i|^2
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64  # the `x64` fixture comes from conftest.py too
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxpotts import losses
from jaxpotts.attention import FactoredAttention
from jaxpotts.potts import FactoredPotts, PottsModel


def random_layer(rng, L, q, H, d, *, softmax, fields=True, scale=1.0):
    kw = dict(fields=scale * rng.normal(size=(L, q)) if fields else None)
    if softmax:
        kw.update(queries=scale * rng.normal(size=(H, L, d)), keys=scale * rng.normal(size=(H, L, d)))
    else:
        kw.update(weights=scale * rng.normal(size=(H, L, L)))
    return FactoredAttention.from_arrays(scale * rng.normal(size=(H, q, q)), **kw)


def dense_model(rng, L, q) -> PottsModel:
    """Joint dense model from numpy: J_ij(a,b) = J_ji(b,a), zero diagonal blocks."""
    C = np.triu(np.ones((L, L)), 1)[:, :, None, None] * rng.normal(size=(L, L, q, q))
    return PottsModel(rng.normal(size=(L, q)), C + C.transpose(1, 0, 3, 2))


def factored_model(rng, L, q) -> FactoredPotts:
    J = np.triu(rng.normal(size=(L, L)), 1)
    U = rng.normal(size=(q, q))
    return FactoredPotts(rng.normal(size=(L, q)), J + J.T, U + U.T)


def pl_reference(h, J, seqs, w) -> float:
    """Negative log PL by explicit loops: sum_m w_m sum_i -log softmax(h_i + sum_{j!=i} J_ij(., s_j))[s_i] / sum w."""
    total = 0.0
    for s, wm in zip(seqs, w, strict=False):
        for i in range(len(s)):
            phi = h[i] + sum(J[i, j, :, s[j]] for j in range(len(s)) if j != i)
            m = phi.max()
            total += wm * (np.log(np.exp(phi - m).sum()) + m - phi[s[i]])
    return total / np.sum(w)


# ----------------------------------------------------------------------------- the identity


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    L=st.integers(2, 6),
    q=st.integers(2, 4),
    H=st.integers(1, 3),
    d=st.integers(1, 3),
    M=st.integers(1, 6),
    softmax=st.booleans(),
    fields=st.booleans(),
    weighted=st.booleans(),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_mlm_equals_pseudo_likelihood_of_to_potts(L, q, H, d, M, softmax, fields, weighted, scale, seed):
    rng = np.random.default_rng(seed)
    with enable_x64():
        fa = random_layer(rng, L, q, H, d, softmax=softmax, fields=fields, scale=scale)
        seqs = rng.integers(0, q, size=(M, L))
        w = None
        if weighted:
            w = rng.exponential(size=M) * (rng.random(M) < 0.7)
            w[rng.integers(M)] += 0.5  # positive total, some zeros
        lhs = L * float(losses.mlm_loss(fa, seqs, w))
        rhs = float(losses.pseudo_likelihood(fa.to_potts(), seqs, w))
    assert abs(lhs - rhs) <= 64 * np.finfo(np.float64).eps * max(1.0, abs(rhs)), (lhs, rhs)


@pytest.mark.parametrize("softmax", [True, False])
def test_pseudo_likelihood_matches_loop_reference(x64, softmax):
    rng = np.random.default_rng(3)
    fa = random_layer(rng, 5, 3, 2, 2, softmax=softmax)
    seqs = rng.integers(0, 3, size=(7, 5))
    w = rng.random(7)
    model = fa.to_potts()
    ref = pl_reference(np.asarray(model.fields), np.asarray(model.couplings), seqs, w)
    assert float(losses.pseudo_likelihood(fa, seqs, w)) == pytest.approx(ref, rel=1e-13)
    assert float(losses.pseudo_likelihood(model, seqs, w)) == pytest.approx(ref, rel=1e-13)
    assert float(losses.mlm_loss(fa, seqs, w)) == pytest.approx(ref / 5, rel=1e-13)


def test_integer_weights_equal_repeated_sequences(x64):
    rng = np.random.default_rng(4)
    fa = random_layer(rng, 5, 3, 2, 2, softmax=True)
    seqs = rng.integers(0, 3, size=(4, 5))
    counts = np.array([1, 3, 0, 2])
    repeated = np.repeat(seqs, counts, axis=0)
    assert float(losses.mlm_loss(fa, seqs, counts.astype(float))) == pytest.approx(
        float(losses.mlm_loss(fa, repeated)), rel=1e-14
    )


@pytest.mark.parametrize("kind", ["dense", "factored", "attention"])
def test_site_logits_and_single_site_losses_agree(x64, kind):
    rng = np.random.default_rng(5)
    model = {
        "dense": lambda: dense_model(rng, 5, 3),
        "factored": lambda: factored_model(rng, 5, 3),
        "attention": lambda: random_layer(rng, 5, 3, 2, 2, softmax=True),
    }[kind]()
    seqs = rng.integers(0, 3, size=(6, 5))
    per_site = np.stack([np.asarray(losses.all_conditional_logits(model, jnp.asarray(s))) for s in seqs])
    logp = per_site - np.log(np.exp(per_site).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, seqs[:, :, None], -1)[..., 0]  # (M, L)
    np.testing.assert_allclose(np.asarray(losses.sequence_pseudo_likelihoods(model, seqs)), nll.sum(1), rtol=1e-13)
    sites = rng.integers(0, 5, size=6)
    np.testing.assert_allclose(
        np.asarray(losses.masked_site_nll(model, seqs, sites)), nll[np.arange(6), sites], rtol=1e-13
    )
    assert float(losses.site_negative_log_likelihood(model, seqs, 2)) == pytest.approx(nll[:, 2].mean(), rel=1e-13)


# ----------------------------------------------------------------------------- stochastic MLM


def test_stochastic_mlm_is_unbiased(x64):
    """Mean over K keys vs the full MLM loss. Each draw is an average of M i.i.d. one-site terms,
    so the mean of K draws has standard error std/sqrt(K); we require |mean - mlm| < 4 sigma
    (a false alarm rate of 6e-5) and, as a sharper check that nothing is biased by more than the
    noise, a bias of below 1% of the loss."""
    rng = np.random.default_rng(6)
    fa = random_layer(rng, 6, 3, 2, 2, softmax=False, scale=1.5)
    seqs = rng.integers(0, 3, size=(5, 6))
    w = rng.random(5) + 0.1
    K = 4000
    keys = jax.random.split(jax.random.PRNGKey(7), K)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: losses.stochastic_mlm_loss(fa, seqs, k, w)))(keys))
    full = float(losses.mlm_loss(fa, seqs, w))
    se = draws.std(ddof=1) / np.sqrt(K)
    assert abs(draws.mean() - full) < 4 * se, (draws.mean(), full, se)
    assert abs(draws.mean() - full) < 0.01 * full
    assert draws.std() > 0  # it is random
    # the exact expectation: averaging the one-site loss over every site choice gives the MLM loss
    per_site = np.stack([np.asarray(losses.masked_site_nll(fa, seqs, np.full(5, i))) for i in range(6)])
    assert np.sum(w * per_site.mean(0)) / np.sum(w) == pytest.approx(full, rel=1e-13)


# ----------------------------------------------------------------------------- L2 convention


def test_l2_convention_matches_plmdca_on_symmetric_couplings(x64):
    model = dense_model(np.random.default_rng(1), 5, 3)
    C, h = np.asarray(model.couplings), np.asarray(model.fields)
    pairs = sum(np.sum(C[i, j] ** 2) for i in range(5) for j in range(i + 1, 5))
    # plmDCA: lambda_J sum_{i<j} |J_ij|^2 + lambda_h sum_i |h_i|^2
    assert float(losses.l2_penalty(model, 0.01, 0.02)) == pytest.approx(0.01 * pairs + 0.02 * np.sum(h**2), rel=1e-13)
    assert float(losses.coupling_norm2(model)) == pytest.approx(2 * pairs, rel=1e-13)
    assert float(losses.l2_penalty(model)) == 0.0


def test_coupling_norms_agree_across_parametrisations(x64):
    rng = np.random.default_rng(8)
    fp = factored_model(rng, 5, 3)
    assert float(losses.coupling_norm2(fp)) == pytest.approx(float(losses.coupling_norm2(fp.to_dense())), rel=1e-13)
    for softmax in (True, False):
        fa = random_layer(rng, 5, 3, 3, 2, softmax=softmax)
        assert float(losses.coupling_norm2(fa)) == pytest.approx(float(losses.coupling_norm2(fa.to_potts())), rel=1e-12)
        assert float(losses.field_norm2(fa)) == pytest.approx(float(np.sum(np.asarray(fa.fields) ** 2)), rel=1e-14)
    # a model whose fields are absent has no field penalty
    assert float(losses.field_norm2(random_layer(rng, 5, 3, 1, 1, softmax=True, fields=False))) == 0.0


# ----------------------------------------------------------------------------- errors


def test_clear_errors():
    model = PottsModel(jnp.zeros((4, 3)), jnp.zeros((4, 4, 3, 3)))
    good = np.zeros((2, 4), np.int32)
    with pytest.raises(ValueError, match=r"outside 0..2 \(found min 0, max 3\)"):
        losses.pseudo_likelihood(model, np.array([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="outside 0..2"):
        losses.mlm_loss(model, np.array([[0, -1, 2, 2]]))
    with pytest.raises(ValueError, match="last dimension L=4"):
        losses.mlm_loss(model, np.zeros((2, 5), np.int32))
    with pytest.raises(ValueError, match="empty"):
        losses.mlm_loss(model, np.zeros((0, 4), np.int32))
    with pytest.raises(ValueError, match=r"shape \(M, L\)"):
        losses.mlm_loss(model, np.zeros((4,), np.int32))
    with pytest.raises(ValueError, match=r"weights must have shape \(M,\) = \(2,\)"):
        losses.mlm_loss(model, good, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        losses.mlm_loss(model, good, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="sum to zero"):
        losses.mlm_loss(model, good, np.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        losses.stochastic_mlm_loss(model, good, jax.random.PRNGKey(0), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="sites must be in 0..3"):
        losses.masked_site_nll(model, good, np.array([0, 4]))
    with pytest.raises(ValueError, match="sites must be integers of shape"):
        losses.masked_site_nll(model, good, np.array([0]))
    with pytest.raises(TypeError, match="must expose its sizes as .L and .q"):
        losses.mlm_loss(lambda s: s, good)
    with pytest.raises(TypeError, match="no couplings to regularise"):
        losses.l2_penalty(object(), 0.1)


def test_l2_rule_is_the_c_tools_prior_with_plmdca_floor():
    """lambda_J = max(floor, c (q-1)(L-1)/M_eff): CCMpred's 0.2 (L-1) absolute at q = 21, c = 0.01."""
    L, q = 53, 21
    # shallow: the prior of fixed weight; CCMpred's lambda_pair = lambda_J * M_eff = 0.2 (L-1)
    assert losses.l2_rule(L, q, 53.0, factor=0.01, floor=0.01) * 53.0 == pytest.approx(0.2 * (L - 1))
    # deep: the floor; the crossover is at M_eff = c (q-1)(L-1) / floor = 20 (L-1)
    assert losses.l2_rule(L, q, 5000.0, factor=0.01, floor=0.01) == 0.01
    crossover = 0.01 * (q - 1) * (L - 1) / 0.01
    assert losses.l2_rule(L, q, crossover * 0.99, factor=0.01, floor=0.01) > 0.01
    assert losses.l2_rule(L, q, crossover * 1.01, factor=0.01, floor=0.01) == 0.01
    assert losses.l2_rule(L, q, 1000.0, factor=0.01) == pytest.approx(0.01 * 20 * 52 / 1000)  # no floor
    for bad in (
        dict(m_eff=0.0),
        dict(m_eff=float("nan")),
        dict(m_eff=10.0, factor=-1.0),
        dict(m_eff=10.0, floor=float("inf")),
    ):
        m_eff = bad.pop("m_eff")
        with pytest.raises(ValueError, match="must be a finite number"):
            losses.l2_rule(L, q, m_eff, **bad)

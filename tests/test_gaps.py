"""Gaps as missing data (``gaps="missing"``, plmc's ``-g``) in the pseudo-likelihood and fits.

Ground truth: a direct float64 loop over sequences and non-gap sites of
-log[exp phi_i(s_i) / sum_{a != gap} exp phi_i(a)], phi_i(a) = h_i(a) + sum over non-gap
neighbours j of J_ij(a, s_j) (plmc's PLMNegLogPosteriorGapReduce, written out), central finite
differences for the gradient, and the ordinary kernel on a (q-1)-colour model for gapless data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import pseudo_likelihood_sum

from jaxpotts import _dense_pl, engine, losses, training
from jaxpotts.potts import PottsModel


def direct_sum(h, J, seqs, w, gap=0):
    """sum_m w_m sum_{i: s_i != gap} -log p_i(s_i | non-gap neighbours), over non-gap colours."""
    return pseudo_likelihood_sum(h, J, seqs, w, gap)


def problem(rng, M, L, q, gap_rate=0.3):
    h = rng.normal(size=(L, q))
    J = rng.normal(size=(L, L, q, q)) * (1 - np.eye(L))[:, :, None, None]
    seqs = rng.integers(1, q, size=(M, L))
    seqs[rng.random((M, L)) < gap_rate] = 0
    seqs[0] = 0  # an all-gap sequence contributes nothing
    return jnp.asarray(h), jnp.asarray(J), jnp.asarray(seqs, jnp.int32), jnp.asarray(rng.uniform(size=M))


@pytest.mark.parametrize("M,L,q", [(1, 2, 3), (23, 5, 4), (70, 6, 3)])
def test_value_matches_direct_loop(x64, M, L, q):
    h, J, seqs, w = problem(np.random.default_rng(M + L), M, L, q)
    ref = direct_sum(h, J, seqs, w)
    model = PottsModel(h, J)
    np.testing.assert_allclose(losses.weighted_pseudo_likelihood_sum(model, seqs, w, gaps="missing"), ref, rtol=1e-12)
    np.testing.assert_allclose(losses.pseudo_likelihood(model, seqs, w, gaps="missing"), ref / w.sum(), rtol=1e-12)
    per = losses.sequence_pseudo_likelihoods(model, seqs, gaps="missing")
    np.testing.assert_allclose(w @ per, ref, rtol=1e-12)
    np.testing.assert_allclose(losses.mlm_loss(model, seqs, w, gaps="missing"), ref / w.sum() / L, rtol=1e-12)


def test_block_size_and_padding_do_not_change_results(x64, monkeypatch):
    h, J, seqs, w = problem(np.random.default_rng(4), 41, 5, 4)
    W = _dense_pl.coupling_matrix(J)
    ref = direct_sum(h, J, seqs, w)
    for B in (1, 8, 64):
        monkeypatch.setattr(_dense_pl, "block_size", lambda K, M, B=B: B)
        np.testing.assert_allclose(_dense_pl.weighted_nll_sum(h, W, seqs, w, None, 0), ref, rtol=1e-12)


def test_gradient_matches_finite_differences_and_ignores_gap_parameters(x64):
    rng = np.random.default_rng(11)
    h, J, seqs, w = problem(rng, 30, 4, 4)
    model = PottsModel(h, J)
    f = lambda m: losses.weighted_pseudo_likelihood_sum(m, seqs, w, gaps="missing")
    g = jax.grad(f)(model)
    # Central differences along random directions (sym. couplings not needed: J is free here).
    eps = 1e-6
    for _ in range(2):
        dh = jnp.asarray(rng.normal(size=h.shape))
        dJ = jnp.asarray(rng.normal(size=J.shape)) * (1 - jnp.eye(4))[:, :, None, None]
        fd = (f(PottsModel(h + eps * dh, J + eps * dJ)) - f(PottsModel(h - eps * dh, J - eps * dJ))) / (2 * eps)
        an = jnp.sum(g.fields * dh) + jnp.sum(g.couplings * dJ)
        np.testing.assert_allclose(an, fd, rtol=1e-7, atol=1e-7)
    # The gap's fields and couplings do not enter: zero gradient, and changing them changes nothing.
    assert np.all(g.fields[:, 0] == 0)
    assert np.all(g.couplings[:, :, 0, :] == 0) and np.all(g.couplings[:, :, :, 0] == 0)
    h2 = h.at[:, 0].set(5.0)
    J2 = (J.at[:, :, 0, :].set(3.0).at[:, :, :, 0].set(-2.0)) * (1 - jnp.eye(4))[:, :, None, None]
    np.testing.assert_allclose(f(PottsModel(h2, J2)), f(model), rtol=1e-13)
    # Gradient with respect to the weights: the per-sequence values.
    gw = jax.grad(lambda w: losses.weighted_pseudo_likelihood_sum(model, seqs, w, gaps="missing"))(w)
    np.testing.assert_allclose(gw, losses.sequence_pseudo_likelihoods(model, seqs, gaps="missing"), rtol=1e-12)


def test_gapless_data_equal_the_state_loss_of_the_reduced_model(x64):
    """Without gaps in the data, "missing" is the ordinary PL of the model without colour 0."""
    rng = np.random.default_rng(2)
    h, J, _, w = problem(rng, 25, 5, 4)
    seqs = jnp.asarray(rng.integers(1, 4, size=(25, 5)), jnp.int32)
    reduced = PottsModel(h[:, 1:], J[:, :, 1:, 1:])
    np.testing.assert_allclose(
        losses.weighted_pseudo_likelihood_sum(PottsModel(h, J), seqs, w, gaps="missing"),
        losses.weighted_pseudo_likelihood_sum(reduced, seqs - 1, w),
        rtol=1e-12,
    )


def test_state_path_is_unchanged(x64):
    h, J, seqs, w = problem(np.random.default_rng(6), 30, 5, 3)
    model = PottsModel(h, J)
    x = jax.nn.one_hot(seqs, 3, dtype=h.dtype)
    logp = jax.nn.log_softmax(h + jnp.einsum("ijab,mjb->mia", J, x), axis=-1)
    ref = -jnp.sum(w * jnp.take_along_axis(logp, seqs[..., None], axis=-1)[..., 0].sum(-1))
    v = losses.weighted_pseudo_likelihood_sum(model, seqs, w)
    assert v == losses.weighted_pseudo_likelihood_sum(model, seqs, w, gaps="state")
    np.testing.assert_allclose(v, ref, rtol=1e-12)
    assert not np.isclose(v, losses.weighted_pseudo_likelihood_sum(model, seqs, w, gaps="missing"))


def test_attention_through_its_couplings(x64):
    from jaxpotts.attention import FactoredAttention

    fa = FactoredAttention(5, 4, 3, 2, key=jax.random.PRNGKey(1), softmax=True, fields=True, init_scale=1.0)
    _, _, seqs, w = problem(np.random.default_rng(8), 20, 5, 4)
    h = fa.fields
    J = fa.couplings() * (1 - jnp.eye(5))[:, :, None, None]
    np.testing.assert_allclose(
        losses.weighted_pseudo_likelihood_sum(fa, seqs, w, gaps="missing"), direct_sum(h, J, seqs, w), rtol=1e-11
    )


def test_fit_plm_minimises_the_plmc_objective_and_keeps_gap_parameters_zero(x64):
    rng = np.random.default_rng(0)
    _, _, seqs, w = problem(rng, 40, 4, 4, gap_rate=0.25)
    l2, l2_fields = 0.05, 0.01
    model, hist = training.fit_plm(seqs, q=4, weights=w, l2=l2, l2_fields=l2_fields, gaps="missing", ftol=0, tol=1e-9)
    assert hist.converged
    assert np.all(model.fields[:, 0] == 0)
    assert np.all(model.couplings[:, :, 0, :] == 0) and np.all(model.couplings[:, :, :, 0] == 0)

    def objective(h, J):  # plmc's objective per effective sequence, over the q - 1 colours
        data = _dense_pl.weighted_nll_sum(h, _dense_pl.coupling_matrix(J), seqs, w, None, 0) / w.sum()
        off = (1 - jnp.eye(4))[:, :, None, None]
        return data + 0.5 * l2 * jnp.sum(off * J[:, :, 1:, 1:] ** 2) + l2_fields * jnp.sum(h[:, 1:] ** 2)

    np.testing.assert_allclose(
        objective(model.fields, model.couplings),
        direct_sum(model.fields, model.couplings, seqs, w) / w.sum()
        + 0.5 * l2 * float(jnp.sum(model.couplings[:, :, 1:, 1:] ** 2))
        + l2_fields * float(jnp.sum(model.fields[:, 1:] ** 2)),
        rtol=1e-10,
    )
    gh, gJ = jax.grad(objective, argnums=(0, 1))(model.fields, model.couplings)
    off = (1 - np.eye(4))[:, :, None, None]
    assert np.abs(gh).max() < 1e-6 and np.abs(gJ * off).max() < 1e-6


def test_clear_errors():
    h, J, seqs, w = problem(np.random.default_rng(0), 5, 3, 3)
    with pytest.raises(ValueError, match="gaps must be one of"):
        losses.pseudo_likelihood(PottsModel(h, J), seqs, gaps="ignore")
    with pytest.raises(ValueError, match="gaps must be one of"):
        engine.FitConfig.from_options(gaps="ignore")
    with pytest.raises(ValueError, match="loss='mlm'"):
        engine.FitConfig.from_options(gaps="missing", loss="stochastic")
    from jaxpotts.attention import Transformer

    tr = Transformer(3, 3, 1, n_heads=1, d_model=4, key=jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="Potts couplings"):
        losses.pseudo_likelihood(tr, seqs, gaps="missing")


def test_mutation_recipe_takes_the_option(tmp_path):
    from jaxpotts import mutations

    assert mutations.plm_settings(10, 21, 100.0)["gaps"] == mutations.MUTATION_DEFAULTS["gaps"] == "state"
    assert mutations.plm_settings(10, 21, 100.0, gaps="missing")["gaps"] == "missing"
    path = tmp_path / "x.fasta"
    path.write_text(">F/1-4\nACGU\n>s\nA-GU\n>t\nAC-U\n")
    with pytest.raises(ValueError, match="treats colour 0 as the gap"):
        mutations.fit_model(path, alphabet="AC-GU", gaps="missing", progress=False)

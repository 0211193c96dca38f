"""Tests for jaxpotts._dense_pl: the row-gather pseudo-likelihood kernel of dense fits.

Ground truth: the one-hot contraction phi = h + sum_j J_ij(., s_j) written with einsum, and
its autodiff gradient, in float64; block padding and every block size give the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpotts import _dense_pl, losses
from jaxpotts.potts import PottsModel


def reference_sum(h, C, seqs, w):
    """sum_m w_m sum_i -log softmax(h_i + sum_j C_ij(., s_j))[s_i] by a one-hot einsum."""
    x = jax.nn.one_hot(seqs, h.shape[1], dtype=h.dtype)
    logp = jax.nn.log_softmax(h + jnp.einsum("ijab,mjb->mia", C, x), axis=-1)
    nll = -jnp.take_along_axis(logp, seqs[..., None], axis=-1)[..., 0].sum(-1)
    return jnp.sum(w * nll)


def problem(rng, M, L, q, dtype=np.float64):
    C = rng.normal(size=(L, L, q, q)) * (1 - np.eye(L))[:, :, None, None]
    return (
        jnp.asarray(rng.normal(size=(L, q)), dtype),
        jnp.asarray(C, dtype),
        jnp.asarray(rng.integers(0, q, size=(M, L)), jnp.int32),
        jnp.asarray(rng.uniform(size=M), dtype),
    )


@pytest.mark.parametrize("M,L,q", [(1, 2, 2), (37, 5, 3), (300, 7, 4)])
def test_value_and_gradients_match_one_hot_reference(x64, M, L, q):
    h, C, seqs, w = problem(np.random.default_rng(M), M, L, q)
    W = _dense_pl.coupling_matrix(C)
    f = lambda h, W, w: _dense_pl.weighted_nll_sum(h, W, seqs, w)
    g = lambda h, C, w: reference_sum(h, C, seqs, w)
    v, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(h, W, w)
    v_ref, (gh, gC, gw) = jax.value_and_grad(g, argnums=(0, 1, 2))(h, C, w)
    np.testing.assert_allclose(v, v_ref, rtol=1e-12)
    np.testing.assert_allclose(grads[0], gh, atol=1e-11)
    np.testing.assert_allclose(grads[1], _dense_pl.coupling_matrix(gC), atol=1e-11)
    np.testing.assert_allclose(grads[2], gw, atol=1e-11)
    # value without differentiation, under jit, and the per-sequence values
    np.testing.assert_allclose(jax.jit(f)(h, W, w), v_ref, rtol=1e-12)
    per = _dense_pl.sequence_nll(h, W, seqs)
    np.testing.assert_allclose(jnp.sum(w * per), v_ref, rtol=1e-12)


def test_block_size_and_padding_do_not_change_results(x64, monkeypatch):
    h, C, seqs, w = problem(np.random.default_rng(3), 53, 6, 3)
    W = _dense_pl.coupling_matrix(C)
    ref = jax.value_and_grad(_dense_pl.weighted_nll_sum, argnums=1)(h, W, seqs, w)
    for B in (1, 8, 16, 64):
        monkeypatch.setattr(_dense_pl, "block_size", lambda K, M, B=B: B)
        v, gW = jax.value_and_grad(_dense_pl.weighted_nll_sum, argnums=1)(h, W, seqs, w)
        np.testing.assert_allclose(v, ref[0], rtol=1e-13)
        np.testing.assert_allclose(gW, ref[1], atol=1e-12)


def test_block_size_uses_the_fewest_evenly_filled_blocks_within_bounds():
    for K in (2, 63, 1113, 2436, 8526, 10**6):
        for M in (1, 7, 100, 512, 513, 3617, 11418):
            B = _dense_pl.block_size(K, M)
            cap = max(8, min(_dense_pl.MAX_BLOCK, (1 << 22) // K) // 8 * 8)
            n_blocks = -(-M // B)
            assert B % 8 == 0 and 8 <= B <= cap, (K, M, B)
            assert n_blocks == max(1, -(-M // cap)), (K, M, B)  # no more blocks than the bounds need
            assert n_blocks * B - M < 8 * n_blocks or B == 8, (K, M, B)  # padding: under 8 rows a block


def test_coupling_matrix_layout():
    L, q = 3, 2
    C = np.arange(L * L * q * q, dtype=float).reshape(L, L, q, q)
    W = np.asarray(_dense_pl.coupling_matrix(jnp.asarray(C)))
    for i, j, a, b in np.ndindex(L, L, q, q):
        assert W[j * q + b, i * q + a] == C[i, j, a, b]


def test_losses_use_the_kernel_for_dense_models(x64):
    rng = np.random.default_rng(5)
    h, C, seqs, w = problem(rng, 40, 5, 3)
    C = 0.5 * (C + C.transpose(1, 0, 3, 2))
    model = PottsModel(h, C)
    np.testing.assert_allclose(
        losses.pseudo_likelihood(model, seqs, w), reference_sum(h, C, seqs, w) / w.sum(), rtol=1e-12
    )
    np.testing.assert_allclose(
        losses.pseudo_likelihood(model, seqs), reference_sum(h, C, seqs, jnp.ones(40)) / 40, rtol=1e-12
    )
    g = jax.grad(lambda m: losses.pseudo_likelihood(m, seqs, w))(model)
    g_ref = jax.grad(lambda h, C: reference_sum(h, C, seqs, w) / w.sum(), argnums=(0, 1))(h, C)
    np.testing.assert_allclose(g.fields, g_ref[0], atol=1e-12)
    np.testing.assert_allclose(g.couplings, g_ref[1], atol=1e-12)


@pytest.mark.parametrize("softmax,fields", [(True, True), (False, False)])
def test_attention_through_its_couplings_equals_its_own_forward_pass(x64, softmax, fields):
    from jaxpotts.attention import FactoredAttention

    rng = np.random.default_rng(7)
    fa = FactoredAttention(6, 4, 5, 3, key=jax.random.PRNGKey(0), softmax=softmax, fields=fields, init_scale=1.0)
    seqs = jnp.asarray(rng.integers(0, 4, (29, 6)), jnp.int32)
    w = jnp.asarray(rng.uniform(size=29))
    f = lambda m, route: losses.weighted_pseudo_likelihood_sum(m, seqs, w, via_couplings=route)
    v1, g1 = jax.value_and_grad(f)(fa, True)
    v2, g2 = jax.value_and_grad(f)(fa, False)
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    np.testing.assert_allclose(v1, w @ losses.sequence_pseudo_likelihoods(fa, seqs), rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-10)

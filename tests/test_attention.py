"""Tests for jaxpotts.attention: factored attention (docs/theory.md section 2, "Factored attention
and the attention-Potts mapping") and the Transformer baseline.

    A^h_ij = softmax_{j != i}(<Q^h_i, K^h_j> / sqrt(d)),   logits_i(a) = sum_h sum_{j != i} A^h_ij V^h(a, s_j) + f_i(a)

The references loop over heads and sites in numpy so they read like the formula. Parameters and
data come from numpy generators (`FactoredAttention.from_arrays`), which keeps the number of
JAX compilations, the cost of these tests on a CPU, small.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64  # the `x64` fixture comes from conftest.py too

from jaxpotts import losses
from jaxpotts.attention import FactoredAttention, Transformer
from jaxpotts.potts import FactoredPotts, conditional_logits, is_joint

L, Q, H, D = 6, 3, 2, 4


def random_layer(rng: np.random.Generator, L, q, H, d, *, softmax: bool, fields: bool = True) -> FactoredAttention:
    """Every parameter random (fields too, and a nonzero diagonal in free weights, which must be
    ignored), float64."""
    kw = dict(fields=rng.normal(size=(L, q)) if fields else None)
    if softmax:
        kw.update(queries=rng.normal(size=(H, L, d)), keys=rng.normal(size=(H, L, d)))
    else:
        kw.update(weights=rng.normal(size=(H, L, L)))
    return FactoredAttention.from_arrays(rng.normal(size=(H, q, q)), **kw)


def attention_ref(fa) -> np.ndarray:
    n_heads, n = fa.n_heads, fa.L
    A = np.zeros((n_heads, n, n))
    for h in range(n_heads):
        for i in range(n):
            others = [j for j in range(n) if j != i]
            if fa.softmax:
                Qh, Kh = np.asarray(fa.queries[h], np.float64), np.asarray(fa.keys[h], np.float64)
                scores = np.array([Qh[i] @ Kh[j] / np.sqrt(Qh.shape[1]) for j in others])
                e = np.exp(scores - scores.max())
                A[h, i, others] = e / e.sum()
            else:
                A[h, i, others] = np.asarray(fa.weights[h, i], np.float64)[others]
    return A


def logits_ref(fa, s) -> np.ndarray:
    A, V = attention_ref(fa), np.asarray(fa.values, np.float64)
    out = np.zeros((fa.L, fa.q)) if fa.fields is None else np.asarray(fa.fields, np.float64).copy()
    for i in range(fa.L):
        for h in range(fa.n_heads):
            for j in range(fa.L):
                if j != i:
                    out[i] += A[h, i, j] * V[h, :, s[j]]
    return out


@pytest.fixture(scope="module")
def layers():
    rng = np.random.default_rng(0)
    with enable_x64():
        return {sm: random_layer(rng, L, Q, H, D, softmax=sm) for sm in (True, False)}


@pytest.fixture(scope="module")
def seqs():
    return np.random.default_rng(1).integers(0, Q, size=(4, L)).astype(np.int32)


_batch_logits = eqx.filter_jit(jax.vmap(lambda m, s: m(s), in_axes=(None, 0)))
_all_site_logits = eqx.filter_jit(jax.vmap(lambda m, s, i: m.site_logits(s, i), in_axes=(None, None, 0)))
_batch_conditionals = eqx.filter_jit(jax.vmap(conditional_logits, in_axes=(None, 0)))


@pytest.mark.parametrize("softmax", [True, False])
def test_attention_and_logits_match_formula(x64, layers, seqs, softmax):
    fa = layers[softmax]
    A = np.asarray(fa.attention())
    assert A.dtype == np.float64 and A.shape == (H, L, L)
    np.testing.assert_allclose(A, attention_ref(fa), atol=1e-13)
    assert np.all(np.diagonal(A, axis1=1, axis2=2) == 0.0)
    if softmax:
        np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-13)
        assert np.all(A >= 0)
    out = np.asarray(_batch_logits(fa, seqs))
    for s, o in zip(seqs, out, strict=False):
        np.testing.assert_allclose(o, logits_ref(fa, s), atol=1e-12)
    np.testing.assert_allclose(np.asarray(_all_site_logits(fa, seqs[0], jnp.arange(L))), out[0], atol=1e-13)


@pytest.mark.parametrize("softmax", [True, False])
def test_logits_are_conditionals_of_to_potts(x64, layers, seqs, softmax):
    fa = layers[softmax]
    model = fa.to_potts()
    A, V = np.asarray(fa.attention()), np.asarray(fa.values)
    np.testing.assert_allclose(np.asarray(model.couplings), np.einsum("hij,hab->ijab", A, V), atol=1e-14)
    np.testing.assert_array_equal(np.asarray(model.fields), np.asarray(fa.fields))
    np.testing.assert_allclose(
        np.asarray(_batch_logits(fa, seqs)), np.asarray(_batch_conditionals(model, seqs)), atol=1e-13
    )
    # row i never looks at s_i: change s_i for every i at once (shift all colours)
    shifted = (seqs + 1) % Q
    out, out_shift = np.asarray(_batch_logits(fa, seqs)), np.asarray(_batch_logits(fa, shifted))
    for i in range(L):
        mixed = seqs.copy()
        mixed[:, i] = shifted[:, i]
        np.testing.assert_allclose(np.asarray(_batch_logits(fa, mixed))[:, i], out[:, i], atol=1e-14)
    assert not np.allclose(out, out_shift)
    # symmetrised joint model
    C = np.asarray(model.couplings)
    joint = fa.to_potts(symmetrize=True)
    np.testing.assert_allclose(np.asarray(joint.couplings), 0.5 * (C + C.transpose(1, 0, 3, 2)), atol=1e-15)
    assert is_joint(joint) and not is_joint(model)


def test_to_potts_without_fields_and_to_factored(x64, seqs):
    rng = np.random.default_rng(2)
    fa = random_layer(rng, L, Q, 1, 1, softmax=False, fields=False)
    np.testing.assert_array_equal(np.asarray(fa.to_potts().fields), 0.0)
    fp = fa.to_factored()
    assert isinstance(fp, FactoredPotts)
    np.testing.assert_allclose(
        np.asarray(_batch_conditionals(fp, seqs)), np.asarray(_batch_logits(fa, seqs)), atol=1e-14
    )
    back = FactoredAttention.from_factored(fp)
    np.testing.assert_allclose(np.asarray(_batch_logits(back, seqs)), np.asarray(_batch_logits(fa, seqs)), atol=1e-14)
    with pytest.raises(ValueError, match="n_heads == 1"):
        random_layer(rng, L, Q, 2, 1, softmax=False).to_factored()


def test_constructor_sizes_dtypes_and_diagonal():
    fa = FactoredAttention(7, 4, 3, 5, key=jax.random.PRNGKey(0), fields=True)
    assert (fa.L, fa.q, fa.n_heads, fa.head_dim) == (7, 4, 3, 5) and fa.softmax
    assert fa.values.dtype == jnp.float32 and fa.fields.shape == (7, 4)
    free = FactoredAttention(7, 4, 3, 5, key=jax.random.PRNGKey(0), softmax=False)
    assert (free.L, free.q, free.head_dim) == (7, 4, None) and free.queries is None and free.fields is None
    assert free.weights.shape == (3, 7, 7)
    assert np.all(np.diagonal(np.asarray(free.weights), axis1=1, axis2=2) == 0.0)


def test_free_attention_diagonal_gets_no_gradient(layers, seqs):
    """The diagonal is masked in the forward pass, so neither the loss nor the L2 penalty moves it."""
    with enable_x64():
        fa = layers[False]
        assert np.any(np.diagonal(np.asarray(fa.weights), axis1=1, axis2=2) == 0.0)
        grads = eqx.filter_jit(eqx.filter_grad(lambda m: losses.mlm_loss(m, seqs) + losses.l2_penalty(m, 0.3)))(fa)
    g = np.asarray(grads.weights)
    assert np.all(np.diagonal(g, axis1=1, axis2=2) == 0.0)
    assert np.all(np.isfinite(g)) and np.any(g != 0.0)


def test_bad_input_errors():
    fa = FactoredAttention.from_arrays(np.zeros((1, 3, 3), np.float32), weights=np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="outside 0..2"):
        fa(jnp.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="outside 0..2"):
        fa(jnp.array([0, -1, 2, 1, 0]))
    with pytest.raises(ValueError, match="L=5"):
        fa(jnp.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="one sequence"):
        fa(jnp.zeros((2, 5), jnp.int32))
    with pytest.raises(ValueError, match="site must be in 0..4"):
        fa.site_logits(jnp.zeros(5, jnp.int32), 5)
    with pytest.raises(TypeError, match="integer colours"):
        fa(jnp.array([0.5, 1, 2, 1, 0]))
    for bad in [dict(L=1), dict(q=1), dict(n_heads=0), dict(head_dim=0), dict(L=3.0)]:
        args = dict(L=5, q=3, n_heads=1, head_dim=2) | bad
        with pytest.raises(ValueError, match="must be an integer"):
            FactoredAttention(args["L"], args["q"], args["n_heads"], args["head_dim"], key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="either queries and keys"):
        FactoredAttention.from_arrays(np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="fields must have shape"):
        FactoredAttention.from_arrays(np.zeros((1, 3, 3)), weights=np.zeros((1, 5, 5)), fields=np.zeros((5, 2)))


@pytest.mark.parametrize(
    "values, kw, exc, match",
    [
        ((1, 3, 2), dict(weights=(1, 5, 5)), ValueError, r"values must have shape \(H, q, q\)"),
        ((1, 1, 1), dict(weights=(1, 5, 5)), ValueError, "q >= 2"),
        ((2, 3, 3), dict(weights=(1, 5, 5)), ValueError, r"weights must have shape \(H, L, L\) = \(2, L, L\)"),
        ((1, 3, 3), dict(weights=(1, 5, 4)), ValueError, "weights must have shape"),
        ((1, 3, 3), dict(weights=(1, 1, 1)), ValueError, "L >= 2"),
        ((1, 3, 3), dict(queries=(1, 5, 2), keys=(1, 4, 2)), ValueError, "queries and keys must both have shape"),
        ((1, 3, 3), dict(queries=(2, 5, 2), keys=(2, 5, 2)), ValueError, "queries and keys must both have shape"),
        ((1, 3, 3), dict(queries=(1, 5, 2)), ValueError, "either queries and keys"),
        ((1, 3, 3), dict(queries=(1, 5, 2), keys=(1, 5, 2), weights=(1, 5, 5)), ValueError, "either queries and keys"),
        ((1, 3, 3), dict(weights=(1, 5, 5), fields=(5, 2)), ValueError, r"fields must have shape \(L, q\) = \(5, 3\)"),
    ],
)
def test_from_arrays_rejects_bad_shapes(values, kw, exc, match):
    with pytest.raises(exc, match=match):
        FactoredAttention.from_arrays(np.zeros(values), **{k: np.zeros(v) for k, v in kw.items()})


@pytest.mark.parametrize("bad", ["values", "weights", "fields", "queries"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_from_arrays_rejects_non_finite_and_non_float(bad, value):
    arrays = dict(values=np.ones((1, 3, 3)), fields=np.ones((5, 3)))
    if bad == "queries":
        arrays |= dict(queries=np.ones((1, 5, 2)), keys=np.ones((1, 5, 2)))
    else:
        arrays |= dict(weights=np.ones((1, 5, 5)))
    arrays[bad][(0,) * arrays[bad].ndim] = value
    with pytest.raises(ValueError, match=f"{bad} contains non-finite values"):
        FactoredAttention.from_arrays(**arrays)
    arrays[bad] = np.ones(arrays[bad].shape, np.int32)
    with pytest.raises(TypeError, match=f"{bad} must be a floating-point array"):
        FactoredAttention.from_arrays(**arrays)


def test_from_arrays_goes_through_the_constructor_checks():
    """A layer from arrays satisfies the same invariants (`__check_init__`) as a constructed
    one, equals it leaf by leaf when given its arrays, and works under jit (traced arrays
    skip only the finiteness check)."""
    made = FactoredAttention(5, 3, 2, 4, key=jax.random.PRNGKey(0), softmax=False, fields=True)
    made.__check_init__()
    again = FactoredAttention.from_arrays(made.values, weights=made.weights, fields=made.fields)
    assert jax.tree.structure(again) == jax.tree.structure(made)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(made), strict=True):
        np.testing.assert_array_equal(a, b)
    traced = jax.jit(lambda v, w: FactoredAttention.from_arrays(v, weights=w).attention())(made.values, made.weights)
    np.testing.assert_array_equal(traced, made.attention())
    broken = eqx.tree_at(lambda m: m.fields, again, jnp.zeros((5, 2)))  # tree_at skips the checks ...
    with pytest.raises(ValueError, match="fields must have shape"):
        broken.__check_init__()  # ... which still describe what is wrong


# ----------------------------------------------------------------------------- transformer


@pytest.fixture(scope="module")
def transformer():
    return Transformer(L, Q, 2, key=jax.random.PRNGKey(0), d_model=8, n_heads=2)


def test_transformer_masks_each_site(transformer, seqs):
    tr = transformer
    assert (tr.L, tr.q, tr.n_layers) == (L, Q, 2)
    out = np.asarray(_batch_logits(tr, seqs))
    assert out.shape == (4, L, Q) and np.all(np.isfinite(out))
    s = jnp.asarray(seqs[0])
    # prediction i = read-out at i of the sequence with s_i replaced by [MASK] = q
    manual = eqx.filter_jit(jax.vmap(lambda m, i: m.readout(m.encode(s.at[i].set(Q))[i]), in_axes=(None, 0)))
    np.testing.assert_allclose(np.asarray(manual(tr, jnp.arange(L))), out[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(_all_site_logits(tr, s, jnp.arange(L))), out[0], rtol=1e-5, atol=1e-6)
    # ... so prediction i does not depend on s_i, but it does depend on the other sites
    shifted = (seqs + 1) % Q
    for i in range(L):
        mixed = seqs.copy()
        mixed[:, i] = shifted[:, i]
        np.testing.assert_allclose(np.asarray(_batch_logits(tr, mixed))[:, i], out[:, i], rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(_batch_logits(tr, shifted)), out)


def test_transformer_works_with_losses(transformer, seqs):
    tr = transformer
    mlm = float(losses.mlm_loss(tr, seqs))
    assert mlm == pytest.approx(float(losses.pseudo_likelihood(tr, seqs)) / L, rel=1e-6)
    assert np.isfinite(float(losses.stochastic_mlm_loss(tr, seqs, jax.random.PRNGKey(2))))
    assert float(losses.coupling_norm2(tr)) > 0 and float(losses.field_norm2(tr)) == 0
    with pytest.raises(ValueError, match="outside 0..2"):
        losses.mlm_loss(tr, np.where(seqs == 0, 3, seqs))
    with pytest.raises(ValueError, match="n_heads"):
        Transformer(L, Q, key=jax.random.PRNGKey(0), d_model=10, n_heads=4)

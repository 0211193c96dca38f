"""jaxpotts.evaluation: coupling comparison up to scale, sign and gauge; the entropy floor."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpotts import exact
from jaxpotts.attention import FactoredAttention
from jaxpotts.evaluation import compare_factored, double_centre, entropy_floor
from jaxpotts.potts import FactoredPotts, random_factored_potts


def _true(L=7, q=3, seed=0):
    return random_factored_potts(
        jax.random.PRNGKey(seed), L, q, graph="gaussian", colours="random", coupling_scale=0.8, field_scale=0.3
    )


def test_double_centre_has_zero_row_and_column_sums():
    U = np.random.default_rng(0).normal(size=(4, 4))
    Uc = double_centre(U)
    np.testing.assert_allclose(Uc.sum(0), 0, atol=1e-12)
    np.testing.assert_allclose(Uc.sum(1), 0, atol=1e-12)
    # shifts U(a,b) + x_a + y_b change no conditional and disappear
    shifted = U + np.arange(4)[:, None] + 3.0 * np.arange(4)[None, :]
    np.testing.assert_allclose(double_centre(shifted), Uc, atol=1e-12)
    with pytest.raises(ValueError, match="square"):
        double_centre(np.zeros((2, 3)))


@pytest.mark.parametrize("c", [2.5, -0.4])
def test_compare_factored_removes_scale_sign_and_gauge(c):
    true = _true()
    q = true.q
    gauge = jnp.arange(q)[:, None] * 0.7 - 0.2 * jnp.arange(q)[None, :]  # V(a,b) + x_a + y_b
    learned = FactoredAttention.from_arrays((true.U / c + gauge)[None], weights=(c * true.J)[None], fields=true.fields)
    cmp = compare_factored(learned, true)
    assert cmp.corr_J == pytest.approx(1.0, abs=1e-6)
    assert cmp.corr_U == pytest.approx(1.0, abs=1e-6)
    assert cmp.rel_err_J == pytest.approx(0.0, abs=1e-5)
    assert cmp.rel_err_couplings == pytest.approx(0.0, abs=1e-5)
    assert cmp.asymmetry == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(cmp.J_learned, np.asarray(true.J), atol=1e-5)
    assert set(cmp.metrics()) == {"corr_J", "corr_U", "rel_err_J", "rel_err_couplings", "asymmetry"}


def test_compare_factored_detects_wrong_couplings():
    true, other = _true(seed=0), _true(seed=1)
    cmp = compare_factored(FactoredAttention.from_factored(other), true)
    assert cmp.corr_J < 0.8
    assert cmp.rel_err_couplings > 0.5
    # the same comparison on a FactoredPotts learned model
    assert compare_factored(other, true).rel_err_couplings == pytest.approx(cmp.rel_err_couplings, rel=1e-5)


def test_compare_factored_errors():
    true = _true()
    with pytest.raises(ValueError, match="one-head"):
        compare_factored(FactoredAttention(true.L, true.q, 2, 1, key=jax.random.PRNGKey(0), softmax=False), true)
    with pytest.raises(ValueError, match="L="):
        compare_factored(_true(L=5), true)
    with pytest.raises(TypeError):
        compare_factored(true.to_dense(), true)
    flat = FactoredPotts(true.fields, true.J, jnp.ones((true.q, true.q)))
    with pytest.raises(ValueError, match="zero in the zero-sum gauge"):
        compare_factored(flat, true)


def test_entropy_floor_matches_exact_conditional_entropy():
    model = _true(L=6, q=3)
    states, probs = exact.probabilities(model)
    idx = jax.random.choice(jax.random.PRNGKey(3), states.shape[0], (20000,), p=probs)
    mean, se = entropy_floor(model, states[idx])
    truth = float(exact.conditional_entropy(model))
    assert abs(mean - truth) < 4 * se
    assert 0 < se < 0.01
    # weights: importance weights p/uniform on uniformly drawn states give the same expectation
    uniform = jax.random.randint(jax.random.PRNGKey(4), (20000,), 0, states.shape[0])
    w = np.asarray(probs)[np.asarray(uniform)] * states.shape[0]
    mean_w, se_w = entropy_floor(model, states[uniform], w)
    assert abs(mean_w - truth) < 4 * se_w
    with pytest.raises(ValueError, match="at least 2"):
        entropy_floor(model, states[:1])
    with pytest.raises(ValueError, match="weights"):
        entropy_floor(model, states[:4], -np.ones(4))

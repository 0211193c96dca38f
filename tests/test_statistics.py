"""Tests for jaxpotts.statistics: weighted frequencies against plain numpy loops, and the
generation check on a model whose exact distribution is known."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxpotts import exact, statistics
from jaxpotts.potts import PottsModel, random_dense_potts


def numpy_moments(seqs, q, w):
    M, L = seqs.shape
    f1 = np.zeros((L, q))
    f2 = np.zeros((L, L, q, q))
    for s, wm in zip(seqs, w, strict=False):
        for i in range(L):
            f1[i, s[i]] += wm
            for j in range(L):
                f2[i, j, s[i], s[j]] += wm
    return f1 / w.sum(), f2 / w.sum()


def test_frequencies_match_loops(x64):
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 3, size=(1500, 4))  # more than one chunk of 1024
    w = rng.uniform(size=1500)
    f1, f2 = numpy_moments(seqs, 3, w)
    np.testing.assert_allclose(statistics.site_frequencies(seqs, 3, w), f1, atol=1e-12)
    np.testing.assert_allclose(statistics.pair_frequencies(seqs, 3, w), f2, atol=1e-12)
    C = f2 - f1[:, None, :, None] * f1[None, :, None, :]
    np.testing.assert_allclose(statistics.connected_correlations(seqs, 3, w), C, atol=1e-12)
    np.testing.assert_allclose(
        statistics.site_frequencies(seqs, 3), numpy_moments(seqs, 3, np.ones(1500))[0], atol=1e-12
    )


def test_compare_statistics_of_data_with_itself():
    rng = np.random.default_rng(1)
    seqs = rng.integers(0, 4, size=(300, 6))
    seqs[:, 1] = seqs[:, 0]  # a real correlation so that C is not all noise
    out = statistics.compare_statistics(seqs, seqs, 4)
    for part in ("site", "connected"):
        assert out[part]["pearson"] == pytest.approx(1.0, abs=1e-6)
        assert out[part]["slope"] == pytest.approx(1.0, abs=1e-6)
    assert out["n_samples"] == out["n_sequences"] == 300


def test_generation_check_of_the_true_model_reproduces_exact_statistics():
    """Data drawn exactly from a small model; the same model's MCMC samples must agree.

    Sampling noise: 20000 data and 2000 x 10 MCMC samples give C_ij errors ~ 0.005, against a
    spread of the true C_ij of ~0.05, so r > 0.9 fails only if the sampler is wrong."""
    model = random_dense_potts(jax.random.PRNGKey(3), 6, 3, coupling_scale=0.8)
    states, p = exact.probabilities(model)
    rng = np.random.default_rng(2)
    p = np.asarray(p, np.float64)
    data = np.asarray(states)[rng.choice(len(p), size=20000, p=p / p.sum())]
    out = statistics.generation_check(
        model, data, key=jax.random.PRNGKey(4), n_chains=2000, n_samples=10, n_burnin=100, thin=5, progress=False
    )
    assert out["site"]["pearson"] > 0.99
    assert out["connected"]["pearson"] > 0.9
    assert abs(out["connected"]["slope"] - 1.0) < 0.1
    assert out["n_samples"] == 20000 and out["sampler"]["rhat"] < 1.05


def test_generation_check_symmetrises_conditional_models():
    model = random_dense_potts(jax.random.PRNGKey(5), 5, 3)
    C = np.asarray(model.couplings)
    noisy = PottsModel(model.fields, C + 0.1 * np.triu(np.ones((5, 5)), 1)[:, :, None, None])  # not symmetric
    data = np.random.default_rng(0).integers(0, 3, size=(100, 5))
    out = statistics.generation_check(
        noisy, data, key=jax.random.PRNGKey(0), n_chains=50, n_samples=2, n_burnin=10, thin=2, progress=False
    )
    assert np.isfinite(out["connected"]["pearson"])


def test_errors():
    with pytest.raises(ValueError, match="q must be"):
        statistics.site_frequencies(np.zeros((3, 2), int), 1)
    with pytest.raises(ValueError, match="shape"):
        statistics.site_frequencies(np.zeros((0, 2), int), 2)
    with pytest.raises(ValueError):
        statistics.site_frequencies(np.array([[0, 3]]), 3)
    with pytest.raises(ValueError, match="L = 3"):
        statistics.compare_statistics(np.zeros((4, 2), int), np.zeros((4, 3), int), 2)

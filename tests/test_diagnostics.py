"""Tests of jaxpotts.diagnostics against independent ground truth.

- AR(1) processes $x_t = \\phi x_{t-1} + \\sqrt{1-\\phi^2}\\,e_t$ (stationary start) have
  exactly $\\tau = (1+\\phi)/(1-\\phi)$; iid draws have $\\tau = 1$.
- Autocorrelation, Geyer's estimator and the R-hats are recomputed here in plain numpy /
  scipy, directly from the published formulas (O(n^2) lag sums, explicit loops, scipy ranks),
  and compared to rounding in float64.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64
from scipy import signal, stats

from jaxpotts import diagnostics as diag


def ar1(phi: float, n_chains: int, n_draws: int, seed: int) -> np.ndarray:
    """Stationary AR(1) with unit marginal variance, shape (n_chains, n_draws)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n_chains, n_draws))
    e[:, 0] /= math.sqrt(1.0 - phi**2)  # x_0 ~ N(0, 1)
    return signal.lfilter([math.sqrt(1.0 - phi**2)], [1.0, -phi], e, axis=1)


# ----------------------------------------------------------------------------- numpy references


def np_autocorrelation(x: np.ndarray) -> np.ndarray:
    """rho_t = sum_{s<n-t} xc_s xc_{s+t} / sum_s xc_s^2, by direct O(n^2) lag sums."""
    m, n = x.shape
    xc = x - x.mean(axis=1, keepdims=True)
    acov = np.array([[np.dot(xc[j, : n - t], xc[j, t:]) for t in range(n)] for j in range(m)])
    return acov / acov[:, :1]


def np_geyer_tau(x: np.ndarray) -> float:
    """Stan's ESS algorithm (Geyer's initial monotone positive sequence), as a plain loop."""
    m, n = x.shape
    if x.max() == x.min():
        return 1.0
    means = x.mean(axis=1)
    xc = x - means[:, None]
    acov = np.array([[np.dot(xc[j, : n - t], xc[j, t:]) / n for t in range(n)] for j in range(m)])
    w = np.var(x, axis=1, ddof=1).mean()
    var_plus = (n - 1) / n * w + (np.var(means, ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (w - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    n_pairs = (n - 3) // 2 + 1  # lags up to n - 2
    kept = []
    k = 0
    while True:
        pk = rho[2 * k] + rho[2 * k + 1]
        if pk <= 0 or k == n_pairs - 1:
            break
        kept.append(pk)
        k += 1
    for i in range(1, len(kept)):  # initial monotone sequence
        kept[i] = min(kept[i], kept[i - 1])
    tail = rho[2 * k] if pk >= 0 else max(rho[2 * k], 0.0)
    tau = -1.0 + 2.0 * sum(kept) + tail
    return max(tau, 1.0 / math.log10(m * n))


def np_split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def np_z_scale(x: np.ndarray) -> np.ndarray:
    r = stats.rankdata(x, method="average").reshape(x.shape)
    return stats.norm.ppf((r - 0.375) / (x.size + 0.25))


def np_rhat(x: np.ndarray) -> float:
    """Gelman-Rubin on the chains as given (BDA3 eq. 11.3-11.4)."""
    m, n = x.shape
    b = n * np.var(x.mean(axis=1), ddof=1)
    w = np.var(x, axis=1, ddof=1).mean()
    return math.sqrt(((n - 1) / n * w + b / n) / w)


def np_rank_rhat(x: np.ndarray) -> float:
    xs = np_split(x)
    return max(np_rhat(np_z_scale(xs)), np_rhat(np_z_scale(np.abs(xs - np.median(xs)))))


# Compilation dominates the run time, so the tests share a few trace shapes:
# REF (4, 61) in float64 for exact comparisons, SHORT (8, 2000) and LONG (64, 8000) in float32.
REF_SHAPE = (4, 61)  # odd: the split drops the middle draw
SHORT = (8, 2000)
LONG = (64, 8000)


def reference_traces() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    m, n = REF_SHAPE
    return {
        "iid": rng.normal(size=(m, n)),
        "ar1_0.8": ar1(0.8, m, n, seed=1),
        "ar1_0.99": ar1(0.99, m, n, seed=2),  # no pair sum becomes negative: Stan's lag bound applies
        "random_walk": np.cumsum(rng.normal(size=(m, n)), axis=1),
        "antithetic": ar1(-0.6, m, n, seed=3),  # tau = 1/4 < 1
        "ties": rng.integers(0, 3, size=(m, n)).astype(float),
        "chain_offsets": ar1(0.7, m, n, seed=5) + np.array([[0.0], [0.0], [0.5], [1.0]]),
        "stuck_chain": np.concatenate([np.zeros((1, n)), rng.normal(size=(m - 1, n))]),
    }


REFERENCE = reference_traces()


@functools.cache
def long_ar1(phi: float) -> np.ndarray:
    return ar1(phi, *LONG, seed=100 + int(10 * phi))


# ----------------------------------------------------------------------------- autocorrelation


# FFT lengths 128 (2n - 1 = 73), 128 (2n - 1 = 127: no spare zero), 8
@pytest.mark.parametrize("shape, x64", [((3, 37), True), ((2, 64), False), ((1, 4), False)])
def test_autocorrelation_matches_direct_sum(shape, x64):
    x = np.random.default_rng(sum(shape)).normal(size=shape) + np.arange(shape[1]) * 0.01
    with enable_x64(x64):
        got = np.asarray(diag.autocorrelation(x))
    assert got.dtype == (np.float64 if x64 else np.float32)
    np.testing.assert_allclose(got, np_autocorrelation(x), rtol=0, atol=1e-12 if x64 else 2e-5)


def test_autocorrelation_of_ar1_is_geometric():
    rho = np.asarray(diag.autocorrelation(long_ar1(0.5))).mean(axis=0)
    # mean over 64 chains of 8000 draws: sd of rho_t about sqrt(tau / N) ~ 0.0025
    np.testing.assert_allclose(rho[:8], 0.5 ** np.arange(8), atol=0.01)


def test_autocorrelation_of_constant_chain_is_nan():
    x = np.stack([np.full(64, 2.5), np.arange(64.0)])
    rho = np.asarray(diag.autocorrelation(x))
    assert np.all(np.isnan(rho[0]))
    assert np.all(np.isfinite(rho[1])) and rho[1, 0] == 1.0


# ----------------------------------------------------------------------------- Geyer estimator vs numpy


@pytest.mark.parametrize("name", list(REFERENCE))
def test_tau_matches_numpy_geyer(name):
    x = REFERENCE[name]
    m, n = x.shape
    with enable_x64(True):
        tau = float(diag.integrated_autocorrelation_time(x))
        ess = float(diag.effective_sample_size(x))
        tau_split = float(diag.integrated_autocorrelation_time(x, split=True))
        ess_split = float(diag.effective_sample_size(x, split=True))
        bulk = float(diag.bulk_effective_sample_size(x))
    ref = np_geyer_tau(x)
    assert tau == pytest.approx(ref, rel=1e-9)
    assert ess == pytest.approx(m * n / ref, rel=1e-9)
    xs = np_split(x)
    ref_split = np_geyer_tau(xs)
    assert tau_split == pytest.approx(ref_split, rel=1e-9)
    assert ess_split == pytest.approx(xs.size / ref_split, rel=1e-9)
    assert bulk == pytest.approx(xs.size / np_geyer_tau(np_z_scale(xs)), rel=1e-9)


def test_matches_arviz_when_installed():
    """Cross-check with ArviZ (not a dependency; skipped without it)."""
    az = pytest.importorskip("arviz")
    for x in REFERENCE.values():
        with enable_x64(True):
            ours = [
                float(diag.effective_sample_size(x, split=True)),
                float(diag.bulk_effective_sample_size(x)),
                float(diag.split_rhat(x)),
                float(diag.rank_normalized_split_rhat(x)),
            ]
        theirs = [
            float(az.ess(x, method="mean")),
            float(az.ess(x, method="bulk")),
            float(az.rhat(x, method="split")),
            float(az.rhat(x, method="rank")),
        ]
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_one_chain_matches_numpy():
    x = ar1(0.5, 1, 61, seed=4)
    with enable_x64(True):
        assert float(diag.integrated_autocorrelation_time(x)) == pytest.approx(np_geyer_tau(x), rel=1e-9)
        assert float(diag.split_rhat(x)) == pytest.approx(np_rhat(np_split(x)), rel=1e-10)


@pytest.mark.parametrize("phi", [0.0, 0.8, -0.6])
def test_tau_float32_close_to_float64_reference(phi):
    x = ar1(phi, *SHORT, seed=6) + 100.0  # an offset, as energies have
    tau = diag.integrated_autocorrelation_time(x)
    assert tau.dtype == jnp.float32
    assert float(tau) == pytest.approx(np_geyer_tau(x), rel=1e-4)


# ----------------------------------------------------------------------------- AR(1) ground truth


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ar1_tau_and_ess(phi):
    """tau_hat against tau = (1+phi)/(1-phi), on 64 chains x 8000 draws.

    Sokal's large-sample relative standard error of a window estimate truncated at lag M is
    sqrt(2(2M+1)/N); with M = 5 tau (Geyer's truncation comes earlier, so this overstates
    the spread: the sd measured over 40 seeds is ~0.6 of it) we allow 3 of these
    (2.0%, 3.3%, 8.2% for phi = 0, 0.5, 0.9).
    """
    x = long_ar1(phi)
    n_total = x.size
    tau_true = (1 + phi) / (1 - phi)
    rtol = 3 * math.sqrt(2 * (2 * 5 * tau_true + 1) / n_total)
    tau = float(diag.integrated_autocorrelation_time(x))
    assert tau == pytest.approx(tau_true, rel=rtol)
    assert float(diag.effective_sample_size(x)) == pytest.approx(n_total / tau_true, rel=1.2 * rtol)
    # rank-normalised split chains of a Gaussian process: the same tau up to the same error
    assert float(diag.bulk_effective_sample_size(x)) == pytest.approx(n_total / tau_true, rel=1.2 * rtol)


def test_iid_normal_tau_one_ess_n():
    x = np.random.default_rng(5).normal(size=LONG)
    n_total = x.size
    rtol = 3 * math.sqrt(2 * 11 / n_total)  # Sokal, M = 5: 2.0%
    assert float(diag.integrated_autocorrelation_time(x)) == pytest.approx(1.0, rel=rtol)
    assert float(diag.effective_sample_size(x)) == pytest.approx(n_total, rel=1.2 * rtol)
    assert float(diag.bulk_effective_sample_size(x)) == pytest.approx(n_total, rel=1.2 * rtol)


def test_antithetic_chain_has_tau_below_one():
    x = ar1(-0.5, *SHORT, seed=9)  # tau = 1/3
    tau = float(diag.integrated_autocorrelation_time(x))
    assert tau == pytest.approx(1 / 3, rel=0.15)
    assert float(diag.effective_sample_size(x)) > x.size


@pytest.mark.slow
@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_ar1_tau_unbiased_over_seeds(phi):
    """200 replicates (32 chains x 4000 draws): the mean of tau_hat is within 4 standard errors
    (and 1%) of the truth, and the spread is below Sokal's bound used in test_ar1_tau_and_ess."""
    tau_true = (1 + phi) / (1 - phi)
    rel = np.array([float(diag.integrated_autocorrelation_time(ar1(phi, 32, 4000, seed=s))) for s in range(200)])
    rel = rel / tau_true - 1
    sd = rel.std(ddof=1)
    assert abs(rel.mean()) < min(4 * sd / math.sqrt(rel.size), 0.01)
    assert sd < math.sqrt(2 * (2 * 5 * tau_true + 1) / (32 * 4000))


# ----------------------------------------------------------------------------- R-hat


@pytest.mark.parametrize("name", list(REFERENCE))
def test_rhat_matches_numpy(name):
    x = REFERENCE[name]
    with enable_x64(True):
        r = float(diag.split_rhat(x))
        rr = float(diag.rank_normalized_split_rhat(x))
        z = np.asarray(diag.rank_normalize(x))
    assert r == pytest.approx(np_rhat(np_split(x)), rel=1e-10)
    assert rr == pytest.approx(np_rank_rhat(x), rel=1e-10)
    np.testing.assert_allclose(z, np_z_scale(x), rtol=0, atol=1e-12)


def test_rhat_near_one_for_mixed_chains():
    x = ar1(0.5, *SHORT, seed=21)
    assert abs(float(diag.split_rhat(x)) - 1) < 0.01
    assert abs(float(diag.rank_normalized_split_rhat(x)) - 1) < 0.01


def test_rhat_large_for_chains_with_different_means():
    offsets = np.zeros((SHORT[0], 1))
    offsets[-2:] = 1.0  # two of eight chains shifted by one standard deviation
    x = ar1(0.5, *SHORT, seed=22) + offsets
    assert float(diag.split_rhat(x)) > 1.1
    assert float(diag.rank_normalized_split_rhat(x)) > 1.1


def test_split_rhat_detects_drift_within_chains():
    rng = np.random.default_rng(23)
    x = rng.normal(size=SHORT) + np.linspace(-1.5, 1.5, SHORT[1])  # the same trend in every chain
    assert np_rhat(x) < 1.01  # Gelman-Rubin without splitting is blind to it
    assert float(diag.split_rhat(x)) > 1.1


def test_rank_rhat_detects_different_scales():
    rng = np.random.default_rng(24)
    scales = np.ones((SHORT[0], 1))
    scales[-2:] = 3.0
    x = rng.normal(size=SHORT) * scales
    assert float(diag.split_rhat(x)) < 1.05  # same means: the classic R-hat barely moves
    assert float(diag.rank_normalized_split_rhat(x)) > 1.1  # the folded (tail) term sees it


def test_rank_based_diagnostics_invariant_under_monotone_maps():
    def g(x):
        return np.exp(2 * x) - 3.0

    x = long_ar1(0.5)
    bulk = float(diag.bulk_effective_sample_size(x))
    assert float(diag.bulk_effective_sample_size(g(x))) == pytest.approx(bulk, rel=1e-5)
    # the plain ESS is not invariant: exp(2x) is less autocorrelated than x
    assert float(diag.effective_sample_size(g(x))) > 1.5 * float(diag.effective_sample_size(x))
    x = ar1(0.6, *SHORT, seed=25) + np.linspace(0, 1, SHORT[0])[:, None]
    assert float(diag.rank_normalized_split_rhat(g(x))) == pytest.approx(
        float(diag.rank_normalized_split_rhat(x)), rel=1e-5
    )


# ----------------------------------------------------------------------------- degenerate traces

JIT_ESS = jax.jit(diag.effective_sample_size)
JIT_RHAT = jax.jit(diag.split_rhat)


def test_all_draws_identical():
    x = np.full(REF_SHAPE, -7.25)
    m, n = REF_SHAPE
    with enable_x64(True):
        assert float(diag.integrated_autocorrelation_time(x)) == 1.0
        assert float(diag.integrated_autocorrelation_time(x, split=True)) == 1.0
        assert float(diag.effective_sample_size(x)) == m * n
        assert float(diag.effective_sample_size(x, split=True)) == 2 * m * (n // 2)
        assert float(diag.bulk_effective_sample_size(x)) == 2 * m * (n // 2)
        assert float(diag.split_rhat(x)) == 1.0
        assert float(diag.rank_normalized_split_rhat(x)) == 1.0
    x = np.full(SHORT, 3.0)
    assert float(JIT_ESS(x)) == x.size  # the rule holds under jit too
    assert float(JIT_RHAT(x)) == 1.0


def test_chains_stuck_at_different_values():
    x = np.repeat(np.linspace(0.1, 0.8, SHORT[0])[:, None], SHORT[1], axis=1)
    assert float(diag.split_rhat(x)) == np.inf
    assert float(diag.rank_normalized_split_rhat(x)) == np.inf
    tau = float(diag.integrated_autocorrelation_time(x))
    assert tau == pytest.approx(2 * SHORT[1], rel=0.01)  # every combined autocorrelation is 1
    assert float(diag.effective_sample_size(x)) == pytest.approx(SHORT[0] / 2, rel=0.01)


def test_integer_trace_is_promoted():
    x = np.random.default_rng(3).integers(-5, 5, size=SHORT)
    assert diag.effective_sample_size(x).dtype == jnp.float32
    assert float(diag.split_rhat(x)) == pytest.approx(np_rhat(np_split(x.astype(float))), rel=1e-5)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "fn",
    [
        diag.autocorrelation,
        diag.integrated_autocorrelation_time,
        diag.effective_sample_size,
        diag.bulk_effective_sample_size,
        diag.split_rhat,
        diag.rank_normalized_split_rhat,
        diag.rank_normalize,
        diag.summarize,
    ],
)
def test_bad_input_raises(fn):
    for bad in (np.zeros(20), np.zeros((2, 3, 20)), np.zeros((0, 20)), np.zeros((2, 3))):
        with pytest.raises(ValueError, match=r"shape \(" + ", ".join(str(d) for d in bad.shape)):
            fn(bad)
    with pytest.raises(ValueError, match="non-finite"):
        fn(np.where(np.arange(40).reshape(2, 20) == 7, np.nan, 1.0))
    with pytest.raises(TypeError, match="real"):
        fn(np.ones((2, 20), dtype=complex))


def test_too_few_draws_for_tau():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"at least 5 draws.*shape \(2, 4\)"):
        diag.effective_sample_size(rng.normal(size=(2, 4)))
    with pytest.raises(ValueError, match=r"at least 10 draws.*shape \(2, 9\)"):
        diag.integrated_autocorrelation_time(rng.normal(size=(2, 9)), split=True)
    with pytest.raises(ValueError, match=r"at least 10 draws"):
        diag.bulk_effective_sample_size(rng.normal(size=(2, 9)))
    # the R-hats and the autocorrelation work from 4 draws
    x = rng.normal(size=(1, 4))
    assert np.isfinite(float(diag.split_rhat(x)))
    assert diag.autocorrelation(x).shape == (1, 4)


# ----------------------------------------------------------------------------- transformations


def test_jit_and_vmap():
    xs = np.stack([ar1(phi, *SHORT, seed=30) for phi in (0.0, 0.5, 0.8)])  # 3 observables
    for fn, jitted in ((diag.effective_sample_size, JIT_ESS), (diag.split_rhat, JIT_RHAT)):
        np.testing.assert_allclose(float(jitted(xs[1])), float(fn(xs[1])), rtol=1e-6)
    for fn in (diag.effective_sample_size, diag.split_rhat):
        eager = np.array([float(fn(x)) for x in xs])
        np.testing.assert_allclose(np.asarray(jax.vmap(fn)(jnp.asarray(xs))), eager, rtol=1e-5)
    # values cannot be checked under jit: NaN propagates, as documented
    bad = jnp.asarray(xs[0]).at[0, 3].set(jnp.nan)
    assert np.isnan(float(JIT_ESS(bad)))


def test_float64_under_x64():
    x = REFERENCE["iid"]
    with enable_x64(True):
        for fn in (diag.integrated_autocorrelation_time, diag.bulk_effective_sample_size, diag.split_rhat):
            assert fn(x).dtype == jnp.float64


# ----------------------------------------------------------------------------- summarize


def test_summarize():
    x = ar1(0.5, *REF_SHAPE, seed=40) + 3.0
    with enable_x64(True):  # REF_SHAPE in float64 is compiled already
        s = diag.summarize(x)
    assert set(s) == {"mean", "std", "stderr", "tau", "ess", "bulk_ess", "rhat", "rank_rhat"}
    assert all(type(v) is float for v in s.values())
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(x.std(ddof=1), rel=1e-12)
    xs = np_split(x)
    assert s["tau"] == pytest.approx(np_geyer_tau(x), rel=1e-9)
    assert s["ess"] == pytest.approx(x.size / np_geyer_tau(x), rel=1e-9)
    assert s["bulk_ess"] == pytest.approx(xs.size / np_geyer_tau(np_z_scale(xs)), rel=1e-9)
    assert s["rhat"] == pytest.approx(np_rhat(xs), rel=1e-9)
    assert s["rank_rhat"] == pytest.approx(np_rank_rhat(x), rel=1e-9)
    assert s["stderr"] == pytest.approx(s["std"] / math.sqrt(s["ess"]), rel=1e-12)
    # the standard error is honest: the true mean 3 lies within 4 of them
    assert abs(s["mean"] - 3.0) < 4 * s["stderr"]

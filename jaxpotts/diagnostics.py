r"""MCMC diagnostics: autocorrelation, integrated autocorrelation time, ESS and R-hat.

Every function takes a *trace* $x$ of shape ``(n_chains, n_draws)`` -- one scalar
observable (energy, magnetisation, ...) per recorded sample of each chain -- and is a pure
JAX function: jittable, vmappable over observables, with no Python loop over draws or lags.
The estimators follow Stan and ArviZ (Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021,
"Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
of MCMC", Bayesian Analysis 16, 667).

Notation: $m$ chains of $n$ draws $x_{jt}$, $N = mn$, chain means $\bar x_j$, chain
variances $s_j^2$ (divisor $n-1$),

$$W = \frac1m \sum_j s_j^2, \qquad \frac{B}{n} = \frac{1}{m-1}\sum_j (\bar x_j - \bar x)^2,
\qquad \widehat{\mathrm{var}}^+ = \frac{n-1}{n} W + \frac{B}{n}$$

(within-chain variance, between-chain variance of the means, and the pooled variance
estimate; $B/n := 0$ when $m = 1$).

Summary of the functions:

- `autocorrelation` -- per-chain normalised autocorrelation by zero-padded FFT.
- `integrated_autocorrelation_time` / `effective_sample_size` -- Geyer's initial monotone
  positive sequence applied to the multi-chain combined autocorrelation (Stan/ArviZ);
  ``split=True`` splits every chain in halves first (ArviZ's ``method="mean"``).
- `bulk_effective_sample_size` -- the same estimator on rank-normalised split chains
  (Vehtari et al.'s bulk-ESS, ArviZ's ``method="bulk"``).
- `split_rhat` -- Gelman-Rubin potential scale reduction on split chains.
- `rank_normalized_split_rhat` -- max of bulk and folded (tail) rank-normalised split-R-hat
  (Vehtari et al.'s recommended R-hat, ArviZ's default).
- `rank_normalize` -- pooled average ranks mapped to normal scores.
- `summarize` -- everything above as Python floats, from one compiled call.

Degenerate traces and bad input (the rules are the same for every function):

- A trace that is not 2-D, has no chain, or has fewer than ``MIN_DRAWS = 4`` draws per
  chain raises ``ValueError`` naming the shape (shapes are static, so this holds under
  ``jit`` too). The autocorrelation time and the ESSs need ``MIN_DRAWS_TAU = 5`` draws per
  chain, per half chain when chains are split (10 for ``split=True``, bulk-ESS and
  `summarize`).
- NaN or inf in a concrete trace raises ``ValueError``; inside ``jit``/``vmap`` the values
  cannot be inspected and non-finite input propagates to NaN results.
- If *every* draw of every chain is the same number, nothing varies and nothing can be
  learned about mixing; by convention $\tau = 1$, ESS $= N$ and R-hat $= 1$ (ArviZ also
  returns $N$ for the ESS, but NaN for R-hat). `autocorrelation` of a chain with zero
  variance is NaN (0/0): it is undefined, and no number is invented for it.
- If every chain is constant but the chains differ ($W = 0 < B$), the chains are stuck in
  different places: R-hat is $+\infty$ and the ESS is about $m/2$ (every combined
  autocorrelation equals 1). A mix of constant and varying chains needs no special case:
  the general formulas apply.

Agreement with ArviZ: on traces with at least two chains and not all draws identical, every
ESS and R-hat here equals its ArviZ (0.23) counterpart to rounding (checked in float64 to
1e-13 relative on random AR(1), random-walk, tied and antithetic traces of 10-3000 draws).
ArviZ refuses one chain for R-hat (NaN); here one chain is split into two halves, as Stan
does.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._validation import as_float_array, check_finite

__all__ = [
    "MIN_DRAWS",
    "MIN_DRAWS_TAU",
    "autocorrelation",
    "integrated_autocorrelation_time",
    "effective_sample_size",
    "bulk_effective_sample_size",
    "split_rhat",
    "rank_normalized_split_rhat",
    "rank_normalize",
    "summarize",
]

MIN_DRAWS = 4
"""Fewest draws per chain accepted by `autocorrelation`, `rank_normalize` and the R-hats."""

MIN_DRAWS_TAU = 5
r"""Fewest draws per chain -- per *half* chain where chains are split -- for the
autocorrelation time and ESS: Geyer's sequence needs the lag pairs (0, 1) and (2, 3) (with
Stan's lag bound, 4 draws would leave only the first pair and an estimate that is just the
floor $1/\log_{10} N$)."""

Trace = Float[ArrayLike, "n_chains n_draws"]


# ----------------------------------------------------------------------------- validation


def _check_trace(x: Any, name: str = "x", *, min_draws: int = MIN_DRAWS, why: str = "") -> jax.Array:
    """`x` as a 2-D floating array of the computing dtype, with at least `min_draws` draws.

    The computing dtype is float64 when x64 is enabled, float32 otherwise (integers and
    low-precision floats are promoted; float64 input without x64 is already float32).
    """
    arr = as_float_array(x, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a trace of shape (n_chains, n_draws) (2 dimensions), got shape {tuple(arr.shape)}"
        )
    n_chains, n_draws = arr.shape
    if n_chains < 1:
        raise ValueError(f"{name} must have at least one chain, got shape {tuple(arr.shape)}")
    if n_draws < min_draws:
        raise ValueError(
            f"{name} must have at least {min_draws} draws per chain{why}, got shape {tuple(arr.shape)} "
            f"(n_chains={n_chains}, n_draws={n_draws})"
        )
    check_finite(arr, name)
    dtype = jnp.promote_types(arr.dtype, jnp.result_type(float))
    return arr.astype(dtype)


def _check_tau_trace(x: Any, split: bool, name: str = "x") -> jax.Array:
    """`_check_trace` with the autocorrelation time's minimum (MIN_DRAWS_TAU per chain used)."""
    why = " for the autocorrelation time and ESS"
    if split:
        why += f" ({MIN_DRAWS_TAU} per half chain, as chains are split)"
    return _check_trace(x, name, min_draws=(2 if split else 1) * MIN_DRAWS_TAU, why=why)


# ----------------------------------------------------------------------------- building blocks


def _fft_size(n: int) -> int:
    """Smallest power of two >= 2n - 1: linear (not circular) correlation up to lag n-1."""
    return 1 << max(0, (2 * n - 2).bit_length())


def _centered_by_chain(x: jax.Array) -> jax.Array:
    r"""$x_{jt} - \bar x_j$, computed from differences to each chain's first draw so that a
    constant chain gives exactly zero (no rounding residue from its mean)."""
    d = x - x[:, :1]
    return d - jnp.mean(d, axis=1, keepdims=True)


def _chain_means(x: jax.Array) -> jax.Array:
    """Chain means up to a common shift (all diagnostics are shift invariant); identical
    constant chains give exactly equal values."""
    d = x - x[:, :1]
    return (x[:, 0] - x[0, 0]) + jnp.mean(d, axis=1)


def _autocovariance(x: jax.Array) -> jax.Array:
    r"""Biased per-chain autocovariance $\hat c_{j,t} = \frac1n \sum_{s=0}^{n-1-t}
    (x_{js} - \bar x_j)(x_{j,s+t} - \bar x_j)$, $t = 0..n-1$, by zero-padded FFT."""
    n = x.shape[1]
    xc = _centered_by_chain(x)
    nfft = _fft_size(n)
    f = jnp.fft.rfft(xc, n=nfft, axis=1)
    acov = jnp.fft.irfft(f.real**2 + f.imag**2, n=nfft, axis=1)[:, :n]
    return (acov / n).astype(x.dtype)


def _variance_terms(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(W, var^+) as in the module docstring."""
    m, n = x.shape
    xc = _centered_by_chain(x)
    w = jnp.mean(jnp.sum(xc**2, axis=1) / (n - 1))
    if m > 1:
        b_over_n = jnp.var(_chain_means(x), ddof=1)
    else:
        b_over_n = jnp.zeros((), x.dtype)
    return w, (n - 1) / n * w + b_over_n


def _is_degenerate(x: jax.Array) -> jax.Array:
    """True when every draw of every chain is the same number."""
    return jnp.max(x) == jnp.min(x)


def _split_chains(x: jax.Array) -> jax.Array:
    """(m, n) -> (2m, n // 2): first and last halves of each chain; for odd n the middle
    draw is dropped (as Stan and ArviZ do)."""
    half = x.shape[1] // 2
    return jnp.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _rank_normalize(x: jax.Array) -> jax.Array:
    flat = jnp.ravel(x)
    size = flat.shape[0]
    s = jnp.sort(flat)
    lo = jnp.searchsorted(s, flat, side="left")
    hi = jnp.searchsorted(s, flat, side="right")
    rank = (lo + hi + 1).astype(x.dtype) / 2  # 1-based average rank of ties
    u = (rank - 0.375) / (size + 0.25)
    return jax.scipy.special.ndtri(u).reshape(x.shape)


def _fold(x: jax.Array) -> jax.Array:
    return jnp.abs(x - jnp.median(x))


def _tau_geyer(x: jax.Array) -> jax.Array:
    r"""Integrated autocorrelation time of chains `x` (no splitting): see
    `integrated_autocorrelation_time`."""
    m, n = x.shape
    acov = _autocovariance(x)
    w, var_plus = _variance_terms(x)
    degenerate = _is_degenerate(x)
    safe_var_plus = jnp.where(degenerate, 1.0, var_plus)
    rho = 1.0 - (w - jnp.mean(acov, axis=0)) / safe_var_plus
    rho = rho.at[0].set(1.0)
    n_pairs = (n - 3) // 2 + 1  # pairs k = 0..K-1 use lags up to 2K - 1 <= n - 2 (as Stan)
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2)
    p = pairs[:, 0] + pairs[:, 1]  # P_k = rho_{2k} + rho_{2k+1}
    nonpositive = p <= 0
    # the last pair examined: the first non-positive one, or the last one available
    k_last = jnp.where(jnp.any(nonpositive), jnp.argmax(nonpositive), n_pairs - 1)
    p_mono = jax.lax.cummin(p, axis=0)  # initial monotone sequence
    head = jnp.sum(jnp.where(jnp.arange(n_pairs) < k_last, p_mono, 0.0))
    rho_even = pairs[k_last, 0]
    tail = jnp.where(p[k_last] >= 0, rho_even, jnp.maximum(rho_even, 0.0))
    tau = -1.0 + 2.0 * head + tail
    tau = jnp.maximum(tau, 1.0 / math.log10(m * n))
    return jnp.where(degenerate, 1.0, tau).astype(x.dtype)


def _rhat(x: jax.Array) -> jax.Array:
    r"""Gelman-Rubin $\hat R = \sqrt{\widehat{\mathrm{var}}^+ / W}$ of chains `x` as given."""
    w, var_plus = _variance_terms(x)
    degenerate = _is_degenerate(x)
    r = jnp.sqrt(var_plus / jnp.where(degenerate, 1.0, w))
    return jnp.where(degenerate, 1.0, r).astype(x.dtype)


# Compiled pieces. Each public function is a composition of these small jitted kernels
# rather than one fused program, so that kernels are compiled once per shape and shared:
# the split-chain ESS, the bulk-ESS and both R-hats all reuse the kernels compiled for the
# half-chain shape. Under an outer jit/vmap everything is traced into one program anyway.
@jax.jit
def _autocorrelation_jit(x: jax.Array) -> jax.Array:
    acov = _autocovariance(x)
    return acov / acov[:, :1]


_split_jit = jax.jit(_split_chains)
_tau_jit = jax.jit(_tau_geyer)
_rhat_jit = jax.jit(_rhat)
_rank_normalize_jit = jax.jit(_rank_normalize)
_fold_jit = jax.jit(_fold)


def _tau(x: jax.Array, split: bool) -> jax.Array:
    return _tau_jit(_split_jit(x) if split else x)


def _bulk_tau(x: jax.Array) -> jax.Array:
    return _tau_jit(_rank_normalize_jit(_split_jit(x)))


def _split_rhat(x: jax.Array) -> jax.Array:
    return _rhat_jit(_split_jit(x))


def _rank_rhat(x: jax.Array) -> jax.Array:
    xs = _split_jit(x)
    bulk = _rhat_jit(_rank_normalize_jit(xs))
    tail = _rhat_jit(_rank_normalize_jit(_fold_jit(xs)))
    return jnp.maximum(bulk, tail)


def _n_used(shape: tuple[int, int], split: bool) -> int:
    m, n = shape
    return 2 * m * (n // 2) if split else m * n


# ----------------------------------------------------------------------------- public API


def autocorrelation(x: Trace) -> Float[Array, "n_chains n_draws"]:
    r"""Normalised autocorrelation function of each chain.

    $$\hat\rho_{j,t} = \frac{\sum_{s=0}^{n-1-t} (x_{js} - \bar x_j)(x_{j,s+t} - \bar x_j)}
    {\sum_{s=0}^{n-1} (x_{js} - \bar x_j)^2}, \qquad t = 0, \dots, n-1,$$

    the usual biased (divisor $n$ at every lag) estimator, so $\hat\rho_{j,0} = 1$ and the
    sequence is positive semi-definite. Computed in $O(n \log n)$ by FFT of the centred
    chain zero-padded to at least $2n - 1$ points, so there is no circular wrap-around.

    Args:
        x: trace, shape (n_chains, n_draws), n_draws >= 4.

    Returns:
        Shape (n_chains, n_draws). A chain with zero variance has an undefined
        autocorrelation: its row is NaN.
    """
    return _autocorrelation_jit(_check_trace(x))


def integrated_autocorrelation_time(x: Trace, *, split: bool = False) -> Float[Array, ""]:
    r"""Integrated autocorrelation time $\tau$ (in draws) by Geyer's initial monotone sequence.

    $\tau = 1 + 2\sum_{t \ge 1} \rho_t$ is the factor by which correlation inflates the
    variance of the mean: $\mathrm{var}(\bar x) \approx \tau \sigma^2 / N$. The estimator is
    the one Stan and ArviZ use for ESS. The autocorrelation combines all chains,

    $$\hat\rho_t = 1 - \frac{W - \frac1m \sum_j \hat c_{j,t}}{\widehat{\mathrm{var}}^+}
    \quad (t \ge 1), \qquad \hat\rho_0 = 1,$$

    with $\hat c_{j,t}$ the biased FFT autocovariance of chain $j$ (see `autocorrelation`),
    so between-chain disagreement counts as correlation. With pair sums
    $P_k = \hat\rho_{2k} + \hat\rho_{2k+1}$ for $k = 0..K-1$, $K = \lfloor (n-3)/2 \rfloor + 1$
    (lags up to $n-2$, Stan's bound):

    - initial positive sequence: the scan stops at $k^*$, the first $k$ with $P_k \le 0$,
      or at $k^* = K-1$ if there is none (the trace is then too short for $\tau$);
    - initial monotone sequence: $\tilde P_k = \min_{k' \le k} P_{k'}$;
    - $\hat\tau = -1 + 2\sum_{k < k^*} \tilde P_k + \hat\rho_{2k^*}$, where the last term
      (Stan's correction for the truncated tail) is replaced by $\max(\hat\rho_{2k^*}, 0)$
      when $P_{k^*} < 0$;
    - $\hat\tau \leftarrow \max(\hat\tau, 1/\log_{10} N)$ (Stan's floor: antithetic chains
      have $\tau < 1$, but the ESS never exceeds $N \log_{10} N$).

    This is Stan's and ArviZ's estimator exactly: ``N / tau`` equals ArviZ's (0.23)
    ``stats.diagnostics._ess`` to rounding (and, with ``split=True``,
    ``arviz.ess(x, method="mean")``). For an AR(1) process the relative standard error of
    $\hat\tau$ is about $\sqrt{2(2M+1)/N}$, $M \approx 2k^*$ the truncation lag (Sokal).

    The loops over lags of the published algorithm are replaced by masks, ``cummin`` and
    ``argmax``, so the function is jittable and vmappable.

    Args:
        x: trace, shape (n_chains, n_draws); n_draws >= 5 (>= 10 with ``split``).
        split: first split every chain into halves (middle draw dropped for odd n_draws);
            $\tau$ is then in draws of the half chains, and a drift within chains shows up
            as long autocorrelation. Default False: $\tau$ of the chains as given.

    Returns:
        Scalar $\hat\tau$ (1 for a trace whose draws are all identical).
    """
    return _tau(_check_tau_trace(x, split), split)


def effective_sample_size(x: Trace, *, split: bool = False) -> Float[Array, ""]:
    r"""Effective sample size $\widehat{\mathrm{ESS}} = N / \hat\tau$.

    $N$ is the number of draws used ($n_\text{chains} n_\text{draws}$, or
    $2 n_\text{chains} \lfloor n_\text{draws}/2 \rfloor$ with ``split=True``) and $\hat\tau$
    is `integrated_autocorrelation_time` with the same ``split``. This is the ESS of the
    mean of $x$ itself (Stan's basic ESS; with ``split=True`` ArviZ's ``ess(method="mean")``);
    the Monte Carlo standard error of the mean is $\mathrm{sd}(x)/\sqrt{\mathrm{ESS}}$.
    See `bulk_effective_sample_size` for the rank-normalised variant, which is robust to
    heavy tails.

    Args:
        x: trace, shape (n_chains, n_draws); n_draws >= 5 (>= 10 with ``split``).
        split: split chains in halves first.

    Returns:
        Scalar ESS ($N$ for a trace whose draws are all identical).
    """
    x = _check_tau_trace(x, split)
    return (_n_used(x.shape, split) / _tau(x, split)).astype(x.dtype)


def bulk_effective_sample_size(x: Trace) -> Float[Array, ""]:
    r"""Bulk effective sample size (Vehtari et al. 2021): $N / \hat\tau$ of rank-normalised split chains.

    The chains are split in halves (`integrated_autocorrelation_time` with ``split=True``),
    all draws pooled and replaced by normal scores of their ranks (`rank_normalize`), and
    the Geyer estimator of `integrated_autocorrelation_time` applied to the scores;
    $N = 2 n_\text{chains} \lfloor n_\text{draws}/2 \rfloor$. Equal to ArviZ's
    ``ess(method="bulk")``. Invariant under monotone transformations of $x$, and defined
    for heavy-tailed observables whose variance is infinite.

    Args:
        x: trace, shape (n_chains, n_draws), n_draws >= 10.

    Returns:
        Scalar bulk-ESS ($N$ for a trace whose draws are all identical).
    """
    x = _check_tau_trace(x, True)
    return (_n_used(x.shape, True) / _bulk_tau(x)).astype(x.dtype)


def split_rhat(x: Trace) -> Float[Array, ""]:
    r"""Split-$\hat R$ (Gelman et al., BDA3): potential scale reduction on half chains.

    Each chain is split into its first and second halves (middle draw dropped for odd
    $n$), giving $m' = 2m$ chains of $n' = \lfloor n/2 \rfloor$ draws, and

    $$\hat R = \sqrt{\frac{\widehat{\mathrm{var}}^+}{W}}, \qquad
    \widehat{\mathrm{var}}^+ = \frac{n'-1}{n'} W + \frac{B}{n'}$$

    with $W$, $B$ of the half chains. $\hat R \to 1$ when all chains sample the same
    distribution; values above 1.01 (Vehtari et al.) or 1.1 (older rule) indicate chains
    that have not mixed or that drift (splitting catches a trend within one chain).

    Args:
        x: trace, shape (n_chains, n_draws), n_draws >= 4; one chain is allowed.

    Returns:
        Scalar $\hat R$: 1 if all draws are identical, $+\infty$ if the half chains are each
        constant but not all equal.
    """
    return _split_rhat(_check_trace(x))


def rank_normalized_split_rhat(x: Trace) -> Float[Array, ""]:
    r"""Rank-normalised split-$\hat R$ (Vehtari et al. 2021), ArviZ's default R-hat.

    $$\hat R = \max\bigl(\hat R_\text{bulk}, \hat R_\text{tail}\bigr),$$

    where $\hat R_\text{bulk}$ is `split_rhat` of the rank-normalised half chains
    (`rank_normalize` over all pooled half-chain draws) and $\hat R_\text{tail}$ the same
    for the folded draws $|x - \mathrm{median}(x)|$. The bulk term detects different
    locations, the tail term different scales, and both are robust to heavy tails.

    Args:
        x: trace, shape (n_chains, n_draws), n_draws >= 4.

    Returns:
        Scalar $\hat R$ (a term whose input is constant counts as 1, by the module's rule).
    """
    return _rank_rhat(_check_trace(x))


def rank_normalize(x: Trace) -> Float[Array, "n_chains n_draws"]:
    r"""Normal scores of pooled ranks: $z = \Phi^{-1}\bigl((r - 3/8) / (S + 1/4)\bigr)$.

    $r$ is the rank (1-based) of each draw among all $S$ draws of all chains, ties getting
    their average rank (as ``scipy.stats.rankdata(method="average")``); the Blom offset
    $3/8$ is the one used by Vehtari et al. 2021 and ArviZ.

    Args:
        x: trace, shape (n_chains, n_draws), n_draws >= 4.

    Returns:
        Same shape as `x`.
    """
    return _rank_normalize_jit(_check_trace(x))


@jax.jit
def _moments_jit(x):
    mean = jnp.mean(x)
    return mean, jnp.sqrt(jnp.sum((x - mean) ** 2) / (x.size - 1))


def summarize(trace: Trace) -> dict[str, float]:
    r"""All diagnostics of one trace as Python floats (one transfer from the device).

    Keys:
        ``mean``: $\bar x$ over all draws; ``std``: their standard deviation (divisor
        $N-1$); ``tau``: `integrated_autocorrelation_time`; ``ess``:
        `effective_sample_size` $= N/\tau$; ``stderr``: Monte Carlo standard error of the
        mean, ``std / sqrt(ess)``; ``bulk_ess``: `bulk_effective_sample_size`; ``rhat``:
        `split_rhat`; ``rank_rhat``: `rank_normalized_split_rhat`.

    Needs n_draws >= 10 (for the bulk-ESS). Not jittable (it returns Python floats); use the
    individual functions inside ``jit``.
    """
    x = _check_tau_trace(trace, True, "trace")
    mean, std = _moments_jit(x)
    tau = _tau(x, split=False)
    values = {
        "mean": mean,
        "std": std,
        "tau": tau,
        "bulk_tau": _bulk_tau(x),
        "rhat": _split_rhat(x),
        "rank_rhat": _rank_rhat(x),
    }
    v = {key: float(np.asarray(value)) for key, value in jax.device_get(values).items()}
    ess = x.size / v["tau"]
    return {
        "mean": v["mean"],
        "std": v["std"],
        "stderr": v["std"] / math.sqrt(ess),
        "tau": v["tau"],
        "ess": ess,
        "bulk_ess": _n_used(x.shape, True) / v.pop("bulk_tau"),
        "rhat": v["rhat"],
        "rank_rhat": v["rank_rhat"],
    }

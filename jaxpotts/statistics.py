r"""Alignment statistics and the generation check of fitted models.

Weighted frequencies of an alignment (or of samples) with weights $w_m$, $W = \sum_m w_m$:

$$f_i(a) = \frac1W \sum_m w_m [s^m_i = a], \qquad
f_{ij}(a,b) = \frac1W \sum_m w_m [s^m_i = a][s^m_j = b], \qquad
C_{ij}(a,b) = f_{ij}(a,b) - f_i(a) f_j(b).$$

The generation check (what DCA users run on a fitted model, e.g. adabmDCA, bmDCA): sample the
model, then compare the samples' one-site frequencies and connected correlations $C_{ij}$
(all $i < j$, all colour pairs) with those of the weighted data, by Pearson correlation and the
slope of the least-squares line through the origin. A model whose samples reproduce the data
has r and slope near 1. Pseudo-likelihood models are not fitted to reproduce these statistics
(only the conditionals are), so their r for $C_{ij}$ is typically well below that of
Boltzmann-machine fits; the check says how far.

Pair frequencies are computed as one-hot products $X^\top \mathrm{diag}(w) X$ accumulated over
chunks of sequences inside one jitted `lax.scan`, O(chunk L q) memory beyond the (Lq, Lq) result.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._precision import einsum, matmul
from ._validation import check_sequences
from .losses import check_weights

__all__ = [
    "site_frequencies",
    "pair_frequencies",
    "connected_correlations",
    "compare_statistics",
    "generation_check",
]

_CHUNK = 1024


def _prepare(seqs, q: int, weights) -> tuple[jax.Array, jax.Array]:
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 2:
        raise ValueError(f"q must be an integer >= 2, got {q!r}")
    arr = jnp.asarray(seqs)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"seqs must have shape (M, L) with M >= 1, got {tuple(arr.shape)}")
    arr = check_sequences(arr, arr.shape[1], int(q), "seqs")
    w = check_weights(weights, arr.shape[0])
    if w is None:
        w = jnp.ones((arr.shape[0],), jnp.result_type(float))
    return arr, w


@partial(jax.jit, static_argnames=("q",))
def _moments(seqs: Int[Array, "M L"], w: Float[Array, " M"], *, q: int):
    M, L = seqs.shape
    n = -(-M // _CHUNK)
    pad = n * _CHUNK - M
    s = jnp.concatenate([seqs, jnp.zeros((pad, L), seqs.dtype)]).reshape(n, _CHUNK, L)
    ww = jnp.concatenate([w, jnp.zeros((pad,), w.dtype)]).reshape(n, _CHUNK)

    def step(carry, xs):
        f1, f2 = carry
        sb, wb = xs
        X = jax.nn.one_hot(sb, q, dtype=w.dtype).reshape(_CHUNK, L * q)
        WX = wb[:, None] * X
        return (f1 + WX.sum(0), f2 + matmul(WX.T, X)), None

    K = L * q
    (f1, f2), _ = jax.lax.scan(step, (jnp.zeros((K,), w.dtype), jnp.zeros((K, K), w.dtype)), (s, ww))
    total = jnp.sum(w)
    return (f1 / total).reshape(L, q), (f2 / total).reshape(L, q, L, q).transpose(0, 2, 1, 3)


def site_frequencies(seqs: Int[Array, "M L"], q: int, weights: Float[Array, " M"] | None = None) -> Float[Array, "L q"]:
    r"""Weighted one-site frequencies $f_i(a)$ (rows sum to one)."""
    s, w = _prepare(seqs, q, weights)
    return einsum("m,mia->ia", w, jax.nn.one_hot(s, q, dtype=w.dtype)) / jnp.sum(w)


def pair_frequencies(
    seqs: Int[Array, "M L"], q: int, weights: Float[Array, " M"] | None = None
) -> Float[Array, "L L q q"]:
    r"""Weighted two-site frequencies $f_{ij}(a,b)$, shape (L, L, q, q); $f_{ii}(a,b) = f_i(a)\delta_{ab}$."""
    s, w = _prepare(seqs, q, weights)
    return _moments(s, w, q=int(q))[1]


def connected_correlations(
    seqs: Int[Array, "M L"], q: int, weights: Float[Array, " M"] | None = None
) -> Float[Array, "L L q q"]:
    r"""$C_{ij}(a,b) = f_{ij}(a,b) - f_i(a) f_j(b)$, shape (L, L, q, q)."""
    s, w = _prepare(seqs, q, weights)
    f1, f2 = _moments(s, w, q=int(q))
    return f2 - f1[:, None, :, None] * f1[None, :, None, :]


def _agreement(x: np.ndarray, y: np.ndarray) -> dict:
    """Pearson r and least-squares slope through the origin of y against x."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
    slope = float(x @ y / (x @ x)) if x @ x > 0 else float("nan")
    return {"pearson": r, "slope": slope}


def compare_statistics(
    samples: Int[Array, "N L"],
    seqs: Int[Array, "M L"],
    q: int,
    weights: Float[Array, " M"] | None = None,
    *,
    arrays: bool = False,
) -> dict:
    r"""How well `samples` reproduce the one- and two-site statistics of the (weighted) data.

    Returns a dict with ``site`` (Pearson r and slope of sample against data $f_i(a)$, all i, a)
    and ``connected`` (the same for $C_{ij}(a,b)$ over all $i < j$ and colour pairs), plus the
    numbers of samples and data sequences. The slope is that of the samples' statistic against
    the data's, through the origin. With ``arrays=True`` also ``arrays``: the compared values
    (``site_data``, ``site_model`` of shape (L, q); ``connected_data``, ``connected_model`` of
    shape (L (L - 1) / 2, q, q), pairs i < j in `numpy.triu_indices` order), e.g. for a scatter plot.
    """
    s_data, w = _prepare(seqs, q, weights)
    s_model, w_model = _prepare(samples, q, None)
    if s_model.shape[1] != s_data.shape[1]:
        raise ValueError(f"samples have L = {s_model.shape[1]} sites but the data have L = {s_data.shape[1]}")
    f1d, f2d = _moments(s_data, w, q=int(q))
    f1m, f2m = _moments(s_model, w_model, q=int(q))
    L = s_data.shape[1]
    iu, ju = np.triu_indices(L, 1)
    cd = np.asarray(f2d - f1d[:, None, :, None] * f1d[None, :, None, :])[iu, ju]
    cm = np.asarray(f2m - f1m[:, None, :, None] * f1m[None, :, None, :])[iu, ju]
    out = {
        "site": _agreement(f1d, f1m),
        "connected": _agreement(cd, cm),
        "n_samples": int(s_model.shape[0]),
        "n_sequences": int(s_data.shape[0]),
    }
    if arrays:
        out["arrays"] = {
            "site_data": np.asarray(f1d),
            "site_model": np.asarray(f1m),
            "connected_data": cd,
            "connected_model": cm,
        }
    return out


def generation_check(
    model: Any,
    seqs: Int[Array, "M L"],
    weights: Float[Array, " M"] | None = None,
    *,
    key: jax.Array,
    n_chains: int = 1000,
    n_samples: int = 10,
    n_burnin: int = 1000,
    thin: int = 100,
    method: str = "gibbs",
    progress: bool | None = None,
    arrays: bool = False,
) -> dict:
    r"""Sample a fitted model and compare its statistics with the data (`compare_statistics`).

    A model with non-symmetric couplings (asymmetric plmDCA, an attention layer's `to_potts()`)
    is first made joint, $\tfrac12[J_{ij}(a,b) + J_{ji}(b,a)]$, the usual way to sample it.
    `jaxpotts.sample` runs `n_chains` chains for `n_burnin` sweeps and records `n_samples`
    samples per chain `thin` sweeps apart; the result also holds the sampler's diagnostics
    (energy autocorrelation time in recorded samples, split R-hat) so mixing can be judged.
    ``arrays=True`` adds the compared statistics (`compare_statistics`).
    """
    from .potts import joint_model
    from .sampling import sample

    model = joint_model(model)
    t0 = time.perf_counter()
    res = sample(
        model,
        key,
        n_chains=n_chains,
        n_samples=n_samples,
        n_burnin=n_burnin,
        thin=thin,
        method=method,
        progress=progress,
    )
    samples = np.asarray(res.sequences).reshape(-1, model.L)
    seconds = time.perf_counter() - t0
    out = compare_statistics(samples, seqs, model.q, weights, arrays=arrays)
    summary = res.summary()
    out.update(
        sampler={k: summary[k] for k in ("tau", "rhat", "ess", "acceptance_rate") if k in summary},
        sweeps=n_burnin + n_samples * thin,
        seconds=seconds,
    )
    return out

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
    "three_site_correlations",
    "summary_statistics",
    "agreement",
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
    if w is None:  # from the host: an eager jnp.ones would compile once per number of sequences
        w = jnp.asarray(np.ones((arr.shape[0],), jnp.result_type(float)))
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
    return _site_frequencies(s, w, int(q))


@partial(jax.jit, static_argnames="q")
def _site_frequencies(s, w, q: int):
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


# Entries x sequences gathered per step of the three-site scan: bounds its memory (~50 MB).
_THREE_SITE_BLOCK = 1 << 22


@partial(jax.jit, static_argnames=("chunk",))
def _centred_third_moments(seqs, w, f1, sites, colours, *, chunk: int):
    M, L = seqs.shape
    n = -(-M // chunk)
    pad = n * chunk - M
    s = jnp.concatenate([seqs, jnp.zeros((pad, L), seqs.dtype)]).reshape(n, chunk, L)
    ww = jnp.concatenate([w, jnp.zeros((pad,), w.dtype)]).reshape(n, chunk)
    mean = f1[sites, colours]  # (E, 3)

    def step(acc, xs):
        sb, wb = xs
        d = (sb[:, sites] == colours[None]).astype(w.dtype) - mean[None]  # (chunk, E, 3)
        return acc + matmul(wb[None, :], jnp.prod(d, axis=-1))[0], None

    acc, _ = jax.lax.scan(step, jnp.zeros((sites.shape[0],), w.dtype), (s, ww))
    return acc / jnp.sum(w)


def _check_entries(sites, colours, L: int, q: int) -> tuple[jax.Array, jax.Array]:
    sites, colours = np.asarray(sites), np.asarray(colours)
    for name, x, top in (("sites", sites, L), ("colours", colours, q)):
        if x.ndim != 2 or x.shape[1] != 3 or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array of shape (E, 3), got {x.dtype} {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= top):
            raise ValueError(f"{name} must lie in 0..{top - 1}, found {x.min()}..{x.max()}")
    if sites.shape != colours.shape:
        raise ValueError(f"sites {sites.shape} and colours {colours.shape} must have the same shape")
    if np.any((sites[:, 0] == sites[:, 1]) | (sites[:, 0] == sites[:, 2]) | (sites[:, 1] == sites[:, 2])):
        raise ValueError("the three sites of each entry must be distinct")
    return jnp.asarray(sites, jnp.int32), jnp.asarray(colours, jnp.int32)


def three_site_correlations(
    seqs: Int[Array, "M L"],
    q: int,
    sites: Int[Array, "E 3"],
    colours: Int[Array, "E 3"],
    weights: Float[Array, " M"] | None = None,
) -> Float[Array, " E"]:
    r"""Connected three-site correlations $C_{ijk}(a,b,c)$ of the listed entries.

    For entry e with sites $(i, j, k)$ = ``sites[e]`` (distinct) and colours $(a, b, c)$ =
    ``colours[e]``, the weighted third central moment of the one-hot variables
    $x^m_{ia} = [s^m_i = a]$:

    $$C_{ijk}(a,b,c) = \frac1W \sum_m w_m (x^m_{ia} - f_i(a))(x^m_{jb} - f_j(b))(x^m_{kc} - f_k(c))
      = f_{ijk}(a,b,c) - f_{ij}(a,b) f_k(c) - f_{ik}(a,c) f_j(b) - f_{jk}(b,c) f_i(a)
        + 2 f_i(a) f_j(b) f_k(c).$$

    All $L^3 q^3$ entries are too many to compute, so the caller picks a subset (e.g.
    `jaxpotts.generative.random_triplets`). One jitted `lax.scan` over chunks of sequences
    gathers the E entries: O(M E) time, O(E) memory plus a chunk of about 4M gathered values.
    """
    s, w = _prepare(seqs, q, weights)
    sites, colours = _check_entries(sites, colours, s.shape[1], int(q))
    return _third(s, w, _site_frequencies(s, w, int(q)), sites, colours)


def _third_chunk(n_entries: int) -> int:
    """Sequences per step of the three-site scan: about `_THREE_SITE_BLOCK` gathered values."""
    return int(min(_CHUNK, max(1, _THREE_SITE_BLOCK // max(3 * n_entries, 1))))


def _third(s, w, f1, sites, colours):
    return _centred_third_moments(s, w, f1, sites, colours, chunk=_third_chunk(sites.shape[0]))


def agreement(x: Float[Array, ...], y: Float[Array, ...]) -> dict:
    r"""Pearson r and least-squares slope through the origin of y against x (both flattened).

    $r = \mathrm{cov}(x, y) / (\sigma_x \sigma_y)$ and $\mathrm{slope} = \sum_k x_k y_k / \sum_k x_k^2$,
    in float64; NaN when undefined (a constant x or y, or x = 0)."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
    slope = float(x @ y / (x @ x)) if x @ x > 0 else float("nan")
    return {"pearson": r, "slope": slope}


def summary_statistics(
    seqs: Int[Array, "M L"],
    q: int,
    weights: Float[Array, " M"] | None = None,
    *,
    triplets: tuple[Int[Array, "E 3"], Int[Array, "E 3"]] | None = None,
) -> dict:
    r"""The statistics the generation checks compare, from one pass over the sequences.

    Returns numpy arrays: ``site`` $f_i(a)$ (L, q); ``connected`` $C_{ij}(a,b)$ (L, L, q, q), whose
    diagonal blocks $C_{ii}(a,b) = f_i(a)\delta_{ab} - f_i(a) f_i(b)$ make it the covariance
    matrix of the one-hot sequences once reshaped to (Lq, Lq); and with ``triplets = (sites,
    colours)`` also ``three_site``, `three_site_correlations` of those entries (E,).
    """
    s, w = _prepare(seqs, q, weights)
    sites = colours = None
    chunk = 1
    if triplets is not None:
        sites, colours = _check_entries(*triplets, s.shape[1], int(q))
        chunk = _third_chunk(sites.shape[0])
    f1, C, three = _summary(s, w, sites, colours, q=int(q), chunk=chunk)
    out = {"site": np.asarray(f1), "connected": np.asarray(C)}
    if triplets is not None:
        out["three_site"] = np.asarray(three)
    return out


@partial(jax.jit, static_argnames=("q", "chunk"))
def _summary(s, w, sites, colours, *, q: int, chunk: int):
    """One compiled program for all statistics of one set (no eager ops, one compilation)."""
    f1, f2 = _moments(s, w, q=q)
    C = f2 - f1[:, None, :, None] * f1[None, :, None, :]
    three = None if sites is None else _centred_third_moments(s, w, f1, sites, colours, chunk=chunk)
    return f1, C, three


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
    the data's, through the origin (`agreement`). With ``arrays=True`` also ``arrays``: the compared values
    (``site_data``, ``site_model`` of shape (L, q); ``connected_data``, ``connected_model`` of
    shape (L (L - 1) / 2, q, q), pairs i < j in `numpy.triu_indices` order), e.g. for a scatter plot.
    """
    s_data, w = _prepare(seqs, q, weights)
    s_model, _ = _prepare(samples, q, None)
    if s_model.shape[1] != s_data.shape[1]:
        raise ValueError(f"samples have L = {s_model.shape[1]} sites but the data have L = {s_data.shape[1]}")
    data = summary_statistics(s_data, q, w)
    model = summary_statistics(s_model, q)
    iu, ju = np.triu_indices(s_data.shape[1], 1)
    cd, cm = data["connected"][iu, ju], model["connected"][iu, ju]
    out = {
        "site": agreement(data["site"], model["site"]),
        "connected": agreement(cd, cm),
        "n_samples": int(s_model.shape[0]),
        "n_sequences": int(s_data.shape[0]),
    }
    if arrays:
        out["arrays"] = {
            "site_data": data["site"],
            "site_model": model["site"],
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

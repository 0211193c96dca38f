r"""Exact enumeration of small Potts models: partition function, probabilities, marginals.

For a joint model (see `jaxpotts.potts`) with energy
$E(s) = -\sum_i h_i(s_i) - \sum_{i<j} J_{ij}(s_i, s_j)$ and inverse temperature $\beta$,

$$p(s) = \frac{e^{-\beta E(s)}}{Z}, \qquad \log Z = \log \sum_{s \in \{0..q-1\}^L} e^{-\beta E(s)}.$$

All $q^L$ sequences are visited, so this is only for small systems: at most `MAX_STATES`
sequences ($2^{20}$: e.g. $L = 20, q = 2$; $L = 10, q = 4$; $L = 4, q = 21$). Sums run in
fixed-size chunks inside a jitted `lax.scan`; each chunk's sequences are generated from their
integer index (base-q digits, site 0 most significant), so memory is $O(\text{chunk} \cdot L)$
plus the size of the result, never $O(q^L L)$ (except `probabilities`, whose result is that big).
Sums are streamed with a running maximum (an online logsumexp), so large $|\beta E|$ neither
overflows nor underflows. Energies come from `jaxpotts.potts.energy`, which is $O(L^2)$ per
sequence for dense and factored models alike (factored couplings are never densified).

Everything is differentiable: e.g. $\partial \log Z / \partial h_i(a) = \beta\, p_i(a)$.
Computation is in the model's dtype (float32 by default, float64 under `jax_enable_x64`).
Calls with the same (L, q, model type, dtype, chunk size) reuse one compilation; beta and the
parameter values are traced, so changing them does not retrace.

Checks (model type, joint couplings, finite scalar beta, size limit) run on concrete inputs;
the joint-couplings and finiteness checks are skipped when called inside a transformation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Scalar, ScalarLike

from . import potts
from ._precision import einsum, matmul
from .potts import AnyPotts

__all__ = [
    "MAX_STATES",
    "DEFAULT_CHUNK_SIZE",
    "states",
    "log_partition",
    "log_probabilities",
    "probabilities",
    "marginals",
    "pair_marginals",
    "conditional_entropy",
    "site_conditional_entropies",
]

MAX_STATES = 2**20
"""Largest number of sequences $q^L$ that enumeration accepts."""

DEFAULT_CHUNK_SIZE = 4096
"""Sequences evaluated together (one vmapped batch) in each step of the scan."""


# ----------------------------------------------------------------------------- validation


def _n_states(L: int, q: int) -> int:
    """q**L as an exact Python integer, refusing sizes beyond MAX_STATES."""
    n = int(q) ** int(L)
    if n > MAX_STATES:
        raise ValueError(
            f"exact enumeration of q**L = {q}**{L} = {n} sequences exceeds the limit "
            f"MAX_STATES = {MAX_STATES}; use a smaller system or sample instead (jaxpotts.sample)"
        )
    return n


def _check_size_args(L, q) -> None:
    for name, value, minimum in (("L", L, 1), ("q", q, 2)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_model(model: AnyPotts) -> int:
    """Validate a model for enumeration; returns q**L."""
    potts.check_joint(model, "exact enumeration")  # also refuses non-models with a TypeError
    return _n_states(model.L, model.q)


def _check_beta(beta: ScalarLike, dtype) -> Scalar:
    """beta as a scalar array of the model's dtype (a fixed dtype avoids retracing)."""
    if isinstance(beta, jax.core.Tracer):
        if beta.ndim != 0:
            raise ValueError(f"beta must be a scalar, got shape {tuple(beta.shape)}")
        return beta.astype(dtype)
    try:
        value = np.asarray(beta)
    except Exception as err:  # e.g. ragged sequences
        raise TypeError(f"beta must be a real number, got {type(beta).__name__}") from err
    if value.dtype == bool or not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
        raise TypeError(f"beta must be a real number, got {type(beta).__name__} of dtype {value.dtype}")
    if value.ndim != 0:
        raise ValueError(f"beta must be a scalar, got shape {value.shape}")
    if not np.isfinite(value):
        raise ValueError(f"beta must be finite, got {value.item()}")
    return jnp.asarray(value, dtype=dtype)


def _check_chunk_size(chunk_size: int | None, n: int) -> int:
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    # No point padding a single chunk beyond the number of sequences.
    return int(min(chunk_size, n))


def _prepare(model: AnyPotts, beta: ScalarLike, chunk_size: int | None) -> tuple[Scalar, int]:
    n = _check_model(model)
    return _check_beta(beta, model.fields.dtype), _check_chunk_size(chunk_size, n)


# ----------------------------------------------------------------------------- states


def _digits(index: Int[Array, " n"], L: int, q: int) -> Int[Array, "n L"]:
    """Base-q digits of `index`, site 0 most significant (so index order is lexicographic)."""
    # q**(L-1) < MAX_STATES, so the place values fit int32.
    place = jnp.asarray(q ** np.arange(L - 1, -1, -1), dtype=jnp.int32)
    return (index[:, None] // place) % q


@functools.partial(jax.jit, static_argnums=(0, 1))
def _all_states(L: int, q: int) -> Int[Array, "n L"]:
    return _digits(jnp.arange(q**L, dtype=jnp.int32), L, q)


def states(L: int, q: int) -> Int[Array, "n L"]:
    r"""All $q^L$ sequences in lexicographic order (site 0 most significant), int32.

    Row $n$ is the base-q expansion of $n$: $s_i = \lfloor n / q^{L-1-i} \rfloor \bmod q$.
    This is the order of `probabilities` and `log_probabilities`.
    """
    _check_size_args(L, q)
    _n_states(L, q)
    return _all_states(int(L), int(q))


# ----------------------------------------------------------------------------- streaming sums


class _Sums(NamedTuple):
    r"""Running sums of $w(s) = e^{-\beta E(s) - m}$ (times statistics), $m$ = running max.

    Fields not requested are None (a NamedTuple of None leaves is a valid, empty pytree).
    """

    log_max: Scalar  # m
    total: Scalar  # sum_s w(s)
    site: Float[Array, "L q"] | None  # sum_s w(s) [s_i = a]
    pair: Float[Array, "L L q q"] | None  # sum_s w(s) [s_i = a][s_j = b]
    nll: Float[Array, " L"] | None  # sum_s w(s) (-log p(s_i | s_-i))


def _chunk_statistics(model, beta, s, weight, want):
    """Unnormalised statistics of one chunk of sequences s (C, L), weighted by weight (C,)."""
    site = pair = nll = None
    if "site" in want or "pair" in want:
        x = jax.nn.one_hot(s, model.q, dtype=weight.dtype)  # (C, L, q)
        if "site" in want:
            site = einsum("c,cia->ia", weight, x)
        if "pair" in want:
            flat = x.reshape(x.shape[0], -1)  # (C, L q): one GEMM instead of an (C,L,L,q,q) outer product
            pair = matmul((flat * weight[:, None]).T, flat).reshape(model.L, model.q, model.L, model.q)
            pair = pair.transpose(0, 2, 1, 3)
    if "nll" in want:

        def site_nll(seq):
            logp = jax.nn.log_softmax(potts.conditional_logits(model, seq, beta), axis=-1)
            return -jnp.take_along_axis(logp, seq[:, None], axis=-1)[:, 0]

        nll = matmul(weight, jax.vmap(site_nll)(s))
    return site, pair, nll


@functools.partial(jax.jit, static_argnames=("chunk_size", "want"))
def _enumerate(model: AnyPotts, beta: Scalar, *, chunk_size: int, want: tuple[str, ...]) -> _Sums:
    """Stream over all q**L sequences in chunks, accumulating the requested sums."""
    L, q = model.L, model.q
    n = q**L
    n_chunks = -(-n // chunk_size)
    dtype = model.fields.dtype
    energies = jax.vmap(potts.energy, in_axes=(None, 0))

    def step(sums: _Sums, start):
        index = start + jnp.arange(chunk_size, dtype=jnp.int32)
        valid = index < n  # only the last chunk is padded
        s = _digits(jnp.where(valid, index, 0), L, q)
        log_w = jnp.where(valid, -beta * energies(model, s), -jnp.inf)
        # The result does not depend on m mathematically, so no gradient needs to flow through it.
        m = jax.lax.stop_gradient(jnp.maximum(sums.log_max, jnp.max(log_w)))
        factor = jnp.exp(sums.log_max - m)  # 0 on the first chunk (log_max = -inf)
        weight = jnp.exp(log_w - m)
        site, pair, nll = _chunk_statistics(model, beta, s, weight, want)
        new = _Sums(
            log_max=m,
            total=sums.total * factor + jnp.sum(weight),
            site=None if site is None else sums.site * factor + site,
            pair=None if pair is None else sums.pair * factor + pair,
            nll=None if nll is None else sums.nll * factor + nll,
        )
        return new, None

    zeros = functools.partial(jnp.zeros, dtype=dtype)
    init = _Sums(
        log_max=jnp.array(-jnp.inf, dtype),
        total=zeros(()),
        site=zeros((L, q)) if "site" in want else None,
        pair=zeros((L, L, q, q)) if "pair" in want else None,
        nll=zeros((L,)) if "nll" in want else None,
    )
    starts = jnp.arange(n_chunks, dtype=jnp.int32) * chunk_size
    sums, _ = jax.lax.scan(step, init, starts)
    return sums


def _expectations(model, beta, chunk_size, want) -> _Sums:
    beta, chunk_size = _prepare(model, beta, chunk_size)
    return _enumerate(model, beta, chunk_size=chunk_size, want=want)


# ----------------------------------------------------------------------------- public API


def log_partition(model: AnyPotts, beta: ScalarLike = 1.0, *, chunk_size: int | None = None) -> Scalar:
    r"""$\log Z(\beta) = \log \sum_s e^{-\beta E(s)}$ over all $q^L$ sequences.

    Differentiable in the parameters and beta: $\partial_{h_i(a)} \log Z = \beta\,p_i(a)$ and
    $\partial_\beta \log Z = -\langle E \rangle$.

    Args:
        model: a joint `PottsModel` or `FactoredPotts` with $q^L \le$ `MAX_STATES`.
        beta: inverse temperature, a finite real scalar (any sign; 0 gives $L \log q$).
        chunk_size: sequences per scan step (memory/speed trade-off; results do not depend on it).

    Raises:
        ValueError: non-symmetric couplings, $q^L >$ `MAX_STATES`, non-finite or non-scalar beta.
        TypeError: not a Potts model, or beta not a real number.
    """
    sums = _expectations(model, beta, chunk_size, want=())
    return sums.log_max + jnp.log(sums.total)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _log_probabilities(model: AnyPotts, beta: Scalar, *, chunk_size: int):
    s = _all_states(model.L, model.q)
    energy = functools.partial(potts.energy, model)
    log_w = -beta * jax.lax.map(energy, s, batch_size=chunk_size)
    return s, log_w - jax.nn.logsumexp(log_w)


def log_probabilities(
    model: AnyPotts, beta: ScalarLike = 1.0, *, chunk_size: int | None = None
) -> tuple[Int[Array, "n L"], Float[Array, " n"]]:
    r"""All sequences and their log-probabilities $\log p(s) = -\beta E(s) - \log Z$.

    Returns `(states(L, q), log_p)` with $n = q^L$ rows in lexicographic order. Unlike the
    other functions this materialises all $q^L$ sequences (it returns them).
    Arguments and errors as in `log_partition`.
    """
    beta, chunk_size = _prepare(model, beta, chunk_size)
    return _log_probabilities(model, beta, chunk_size=chunk_size)


def probabilities(
    model: AnyPotts, beta: ScalarLike = 1.0, *, chunk_size: int | None = None
) -> tuple[Int[Array, "n L"], Float[Array, " n"]]:
    r"""All sequences and their probabilities $p(s) = e^{-\beta E(s)} / Z$ (they sum to 1).

    Returns `(states(L, q), probs)` with $n = q^L$ rows in lexicographic order.
    Arguments and errors as in `log_partition`.
    """
    s, log_p = log_probabilities(model, beta, chunk_size=chunk_size)
    return s, jnp.exp(log_p)


def marginals(model: AnyPotts, beta: ScalarLike = 1.0, *, chunk_size: int | None = None) -> Float[Array, "L q"]:
    r"""Single-site marginals $p_i(a) = \sum_s p(s)\,[s_i = a]$; each row sums to 1.

    Arguments and errors as in `log_partition`.
    """
    sums = _expectations(model, beta, chunk_size, want=("site",))
    return sums.site / sums.total


def pair_marginals(
    model: AnyPotts, beta: ScalarLike = 1.0, *, chunk_size: int | None = None
) -> Float[Array, "L L q q"]:
    r"""Pair marginals $p_{ij}(a,b) = \sum_s p(s)\,[s_i = a]\,[s_j = b]$.

    Symmetric ($p_{ij}(a,b) = p_{ji}(b,a)$); the diagonal blocks are $p_{ii}(a,b) = \delta_{ab}\,p_i(a)$;
    summing over b gives $p_i(a)$. Arguments and errors as in `log_partition`.
    """
    sums = _expectations(model, beta, chunk_size, want=("pair",))
    return sums.pair / sums.total


def site_conditional_entropies(
    model: AnyPotts, beta: ScalarLike = 1.0, *, chunk_size: int | None = None
) -> Float[Array, " L"]:
    r"""Per-site expected negative log conditional $H_i = \mathbb E_p[-\log p(s_i \mid s_{-i})]$.

    $H_i$ is the conditional entropy $H(s_i \mid s_{-i})$: the smallest expected loss of any
    predictor of the masked site i, reached by the model's own conditional
    $p(s_i = a \mid s_{-i}) = \mathrm{softmax}_a(\beta[h_i(a) + \sum_{j\ne i} J_{ij}(a, s_j)])$.
    Arguments and errors as in `log_partition`.
    """
    sums = _expectations(model, beta, chunk_size, want=("nll",))
    return sums.nll / sums.total


def conditional_entropy(model: AnyPotts, beta: ScalarLike = 1.0, *, chunk_size: int | None = None) -> Scalar:
    r"""Mean over sites of the conditional entropies, $\frac1L \sum_i \mathbb E_p[-\log p(s_i \mid s_{-i})]$.

    The floor of the masked-language-modelling loss (`jaxpotts.losses.mlm_loss`) on data drawn
    from the model: the population MLM loss of the true conditionals. Per-site values:
    `site_conditional_entropies`. Arguments and errors as in `log_partition`.
    """
    return jnp.mean(site_conditional_entropies(model, beta, chunk_size=chunk_size))

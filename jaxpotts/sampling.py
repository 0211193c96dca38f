r"""Single-site MCMC for Potts models: Gibbs (heat-bath) and Metropolis kernels.

A *kernel* advances one chain at one site (blackjax style): `step(key, s[L], site) ->
(s[L], SiteInfo)`. `jax.vmap` runs it over chains and `lax.scan` over the L site updates of a
sweep and over sweeps. Both kernels leave $p(s) \propto e^{-\beta E(s)}$ invariant and satisfy
detailed balance for each single-site update:

* Gibbs: draw $s_k \sim p(s_k \mid s_{-k}) = \mathrm{softmax}(\beta\phi_k)$, with local field
  $\phi_k(a) = h_k(a) + \sum_{j \ne k} J_{kj}(a, s_j)$.
* Metropolis: propose $a' \neq s_k$ uniformly, accept with $\min(1, e^{\beta(\phi_k(a') - \phi_k(s_k))})$.

Cost per site update and chain: dense Gibbs $O(Lq)$ (one gathered row of $J_{jk}(s_j,\cdot)$ per
j), dense Metropolis $O(L)$; factored Gibbs $O(L + q^2)$ (colour counts weighted by $J_{kj}$,
then one product with U), factored Metropolis $O(L)$. Sequential sweeps compute the fields of
blocks of sites for all chains at once instead: a factored model with one matrix product
(`_factored_block_sweep`), a dense one by summing contiguous coupling rows of the whole block
(`_dense_block_sweep`, from a transposed copy of the couplings made once per `sample` call).
The factored kernels never build the (L, L, q, q) couplings.
All kernels use the symmetry $J_{kj}(a,b) = J_{jk}(b,a)$ of a joint model to read contiguous
rows, which is why sampling refuses non-symmetric couplings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar, ScalarLike

from . import diagnostics
from ._precision import einsum, matmul
from ._progress import progress_bar
from ._validation import check_count, check_finite, check_sequences
from .memory import check_memory, sample_estimate
from .potts import AnyPotts, FactoredPotts, PottsModel, check_joint
from .sharding import replicate, to_one_device

__all__ = [
    "SiteInfo",
    "SampleResult",
    "Kernel",
    "gibbs_kernel",
    "metropolis_kernel",
    "sweep",
    "sweeps",
    "sample",
]

# Partial unrolling of the loop over the L neighbours: XLA:CPU fuses 16 row gathers into
# one loop body, which measured ~2.5x faster than unroll=1 at L=64 and L=200.
_NEIGHBOUR_UNROLL = 16


class SiteInfo(NamedTuple):
    """What one site update did: proposal accepted (always True for Gibbs) and colour changed."""

    accepted: Bool[Array, ""]
    changed: Bool[Array, ""]


# ----------------------------------------------------------------------------- local fields


def _site_field(model: AnyPotts, s: Int[Array, " L"], k: Int[Array, ""]) -> Float[Array, " q"]:
    r"""$\phi_k(\cdot) = h_k + \sum_j J_{kj}(\cdot, s_j)$ for one chain, reading rows
    $J_{jk}(s_j, \cdot)$ (equal by symmetry) so each neighbour costs one contiguous gather."""
    q = model.q
    if isinstance(model, PottsModel):
        C = model.couplings

        # Index the full tensor inside the body: scanning over C itself would copy an
        # (L, q, q) slab per neighbour.
        def add_row(acc, xs):
            j, s_j = xs
            return acc + C[j, k, s_j], None

        acc0 = jnp.zeros((q,), model.fields.dtype)
        acc, _ = jax.lax.scan(add_row, acc0, (jnp.arange(model.L), s), unroll=_NEIGHBOUR_UNROLL)
        return model.fields[k] + acc

    colours = jnp.arange(q)

    def add_count(acc, xs):
        J_kj, s_j = xs
        return acc + jnp.where(colours == s_j, J_kj, 0.0), None

    acc0 = jnp.zeros((q,), model.fields.dtype)
    counts, _ = jax.lax.scan(add_count, acc0, (model.J[k], s), unroll=_NEIGHBOUR_UNROLL)
    # counts[b] = sum_j J_kj [s_j = b];  phi_k(a) = h_k(a) + sum_b U(a, b) counts[b]
    return model.fields[k] + matmul(model.U, counts)


def _site_field_difference(
    model: AnyPotts, s: Int[Array, " L"], k: Int[Array, ""], new: Int[Array, ""], old: Int[Array, ""]
) -> Scalar:
    r"""$\phi_k(\text{new}) - \phi_k(\text{old})$ in $O(L)$ (the Metropolis energy change is its negative)."""
    dh = model.fields[k, new] - model.fields[k, old]
    if isinstance(model, PottsModel):
        C = model.couplings

        def add_pair(acc, xs):
            j, s_j = xs
            return acc + (C[j, k, s_j, new] - C[j, k, s_j, old]), None

        acc0 = jnp.zeros((), model.fields.dtype)
        acc, _ = jax.lax.scan(add_pair, acc0, (jnp.arange(model.L), s), unroll=_NEIGHBOUR_UNROLL)
        return dh + acc
    dU = model.U[new] - model.U[old]  # U symmetric: U(new, b) - U(old, b)
    return dh + matmul(model.J[k], dU[s])


def _chain_energies(model: AnyPotts, states: Int[Array, "n_chains L"]) -> Float[Array, " n_chains"]:
    r"""`energy` of every chain, for the recorded samples.

    $\sum_k \sum_j J_{kj}(s_k, s_j)$ is summed site by site for all chains at once, with the
    samplers' reads ($L^2$ scalar reads per chain; dense: one site's (L, q, q) slab at a time).
    `jax.vmap(energy)` gathers the $L^2$ pairs of each chain with four index arrays (dense) or
    an (L, L) gather (factored), which on CPU cost several sweeps' time per recorded sample.
    """
    L = model.L
    if isinstance(model, FactoredPotts):

        def pairs(s, k):
            return matmul(model.J[k], model.U[s[k], s])

    else:
        C = model.couplings

        def pairs(s, k):  # sum_j J_kj(s_k, s_j) = sum_j J_jk(s_j, s_k)
            def add_pair(acc, xs):
                j, s_j = xs
                return acc + C[j, k, s_j, s[k]], None

            acc, _ = jax.lax.scan(add_pair, jnp.zeros((), C.dtype), (jnp.arange(L), s), unroll=_NEIGHBOUR_UNROLL)
            return acc

    def add_site(total, k):
        return total + jax.vmap(pairs, in_axes=(1, None))(ST, k), None

    ST = states.T
    pair_sum, _ = jax.lax.scan(add_site, jnp.zeros(states.shape[0], model.fields.dtype), jnp.arange(L))
    fields = jnp.sum(jnp.take_along_axis(model.fields, ST, axis=1), axis=0)
    return -(fields + 0.5 * pair_sum)


# ----------------------------------------------------------------------------- kernels


def _inverse_cdf(logits: Float[Array, " q"], u: Float[Array, ""]) -> Int[Array, ""]:
    """Index a with probability softmax(logits)_a, from one uniform u in (0, 1).

    The cumulative sum is a product with a triangular matrix: XLA:CPU's cumsum lowers to a
    slow reduce-window, the tiny matmul is several times faster once vmapped over chains.
    """
    q = logits.shape[-1]
    p = jnp.exp(logits - jnp.max(logits))
    cdf = matmul(p, jnp.triu(jnp.ones((q, q), p.dtype)))
    # p(argmax) = 1, so cdf[-1] >= 1 and t > 0: colours of zero probability are never picked.
    t = u * cdf[-1]
    return jnp.sum(cdf < t).astype(jnp.int32)


def _uniforms(key: PRNGKeyArray, shape, dtype) -> Float[Array, ...]:
    """Uniforms in the open interval (0, 1) (log(u) and u * Z stay away from zero)."""
    return jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)


# Uniform numbers consumed by one site update. Sweeps draw them for all sites and chains in
# one call, which is several times cheaper than splitting a key per update on CPU.
_N_UNIFORMS = {"gibbs": 1, "metropolis": 2}


def _gibbs_update(u: Float[Array, " 1"], old: Int[Array, ""], phi: Float[Array, " q"], beta) -> tuple:
    """Heat-bath draw of one site from its local field phi."""
    new = _inverse_cdf(beta * phi, u[0])
    return new, SiteInfo(jnp.asarray(True), new != old)


def _proposal(u0: Float[Array, ...], old: Int[Array, ...], q: int) -> Int[Array, ...]:
    """old + 1 + floor(u0 (q-1)) mod q: uniform over the q-1 other colours."""
    shift = jnp.minimum(jnp.floor(u0 * (q - 1)).astype(jnp.int32), q - 2)  # guard u0 (q-1) rounding up
    return (old + 1 + shift) % q


def _metropolis_update(u: Float[Array, " 2"], old: Int[Array, ""], q: int, field_difference: Callable, beta):
    """Metropolis step of one site; `field_difference(new, old)` is phi(new) - phi(old)."""
    new = _proposal(u[0], old, q)
    accept = jnp.log(u[1]) < beta * field_difference(new, old)
    return jnp.where(accept, new, old), SiteInfo(accept, accept)


def _site_rule(model: AnyPotts, beta, method: str) -> Callable:
    """`rule(u, s, site) -> (new colour, SiteInfo)`: one site update of one chain."""
    if method == "gibbs":

        def rule(u, s, site):
            return _gibbs_update(u, s[site], _site_field(model, s, site), beta)
    else:

        def rule(u, s, site):
            return _metropolis_update(u, s[site], model.q, partial(_site_field_difference, model, s, site), beta)

    return rule


def _step(model: AnyPotts, beta, method: str) -> Callable:
    """`step(u, s, site) -> (s, SiteInfo)`: `_site_rule` written back into the chain."""
    rule = _site_rule(model, beta, method)

    def step(u, s, site):
        new, info = rule(u, s, site)
        return s.at[site].set(new), info

    return step


def _keyed(step: Callable, n_uniforms: int, dtype) -> Callable:
    def keyed_step(key: PRNGKeyArray, s: Int[Array, " L"], site: Int[Array, ""]):
        return step(_uniforms(key, (n_uniforms,), dtype), s, site)

    return keyed_step


def gibbs_kernel(model: AnyPotts, beta: ScalarLike = 1.0) -> Callable:
    r"""Heat-bath kernel for one chain: `step(key, s, site) -> (s, SiteInfo)`.

    Redraws $s_k$ from $p(s_k = a \mid s_{-k}) = \mathrm{softmax}_a(\beta\phi_k(a))$.
    """
    return _keyed(_step(model, beta, "gibbs"), 1, model.fields.dtype)


def metropolis_kernel(model: AnyPotts, beta: ScalarLike = 1.0) -> Callable:
    r"""Metropolis kernel for one chain: `step(key, s, site) -> (s, SiteInfo)`.

    Proposes a colour $a' \ne s_k$ uniformly among the other $q-1$ (a symmetric proposal) and
    accepts with probability $\min(1, \exp(\beta[\phi_k(a') - \phi_k(s_k)]))$.
    """
    return _keyed(_step(model, beta, "metropolis"), 2, model.fields.dtype)


_KERNELS = {"gibbs": gibbs_kernel, "metropolis": metropolis_kernel}
_SCHEDULES = ("sequential", "random")

# Default sites per block of the factored sequential sweep (see `_factored_block_sweep`), the
# `factored_block` argument of `sweep` and `sample`; 0 uses the one-chain kernel with O(L) work
# per update instead.
_FACTORED_BLOCK = {"gibbs": 8, "metropolis": 8}


@dataclasses.dataclass(frozen=True)
class Kernel:
    """Which implementation runs the sweeps of `sample` and `sweep` (``kernel=`` takes this or
    just the name).

    Attributes:
        name: "xla" (vmapped XLA kernels), "pallas" (the fused sweep of
            `jaxpotts._pallas_sampling`: one launch per sweep, a block of chains per program;
            Pallas interpret mode off GPU, for tests) or "auto" ("pallas" on a GPU backend for
            sequential float32 sweeps on one device, "xla" otherwise). Both use the same random
            numbers, so they give the same chains up to the rounding of the fields.
        factored_block: sites per block of the factored sequential XLA sweep, whose fields are
            one GEMM per block (None: 8; 0: the one-chain kernel, O(L) per update).
    """

    name: str = "auto"
    factored_block: int | None = None


def _as_kernel(kernel: str | Kernel) -> Kernel:
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return Kernel(kernel)
    raise TypeError(f"kernel must be a name or a jaxpotts.sampling.Kernel, got {type(kernel).__name__}")


def _factored_block(method: str, factored_block: int | None) -> int:
    """The block size to use: the argument, or the method's default when it is None."""
    if factored_block is None:
        return _FACTORED_BLOCK[method]
    if isinstance(factored_block, bool) or not isinstance(factored_block, (int, np.integer)) or factored_block < 0:
        raise ValueError(f"factored_block must be an integer >= 0 (0: no blocks), got {factored_block!r}")
    return int(factored_block)


# ----------------------------------------------------------------------------- sweeps


def _count(info: SiteInfo, valid=True) -> Int[Array, "n_chains 2"]:
    """Per-chain (accepted, changed) indicators of one update of every chain. Sweeps keep
    per-chain counts and sum them once at the end (in int64 on the host for `sample`): no int32
    overflow of run totals, and with chains sharded over devices no cross-device reduction per
    site update."""
    return jnp.stack([info.accepted & valid, info.changed & valid], axis=-1).astype(jnp.int32)


def _no_counts(states: Int[Array, "n_chains L"]) -> Int[Array, "n_chains 2"]:
    return jnp.zeros((states.shape[0], 2), jnp.int32)


def _kernel_sweep(model, beta, method, u, states, sites, site_axis):
    """L updates per chain with the vmapped one-chain step; u: (L, n_chains, n_uniforms)."""
    batched_step = jax.vmap(_step(model, beta, method), in_axes=(0, 0, site_axis))

    def update(carry, xs):
        states, counts = carry
        u_t, site_t = xs
        states, info = batched_step(u_t, states, site_t)
        return (states, counts + _count(info)), None

    (states, counts), _ = jax.lax.scan(update, (states, _no_counts(states)), (u, sites))
    return states, counts


def _sequential_sweep(model, beta, method, u, states):
    """Sites 0..L-1 in order, the same site in every chain; u: (L, n_chains, n_uniforms).

    The same updates and random numbers as `_kernel_sweep` with `sites = arange(L)`, but the
    states are carried transposed, (L, n_chains): each update reads and writes one contiguous
    row (the site's colour in every chain) instead of a strided column.
    """
    rule = jax.vmap(_site_rule(model, beta, method), in_axes=(0, 1, None))

    def update(carry, xs):
        ST, counts = carry
        k, u_k = xs
        new, info = rule(u_k, ST, k)
        return (ST.at[k].set(new), counts + _count(info)), None

    (ST, counts), _ = jax.lax.scan(update, (states.T, _no_counts(states)), (jnp.arange(model.L), u))
    return ST.T, counts


def _inverse_cdf_columns(logits: Float[Array, "q n"], u: Float[Array, " n"]) -> Int[Array, " n"]:
    """`_inverse_cdf` for the columns of a (q, n) array: every operation runs along the long
    chain axis, which XLA:CPU vectorises (several times faster than (n, q) rows at q = 21)."""
    q = logits.shape[0]
    p = jnp.exp(logits - jnp.max(logits, axis=0))
    cdf = matmul(jnp.tril(jnp.ones((q, q), p.dtype)), p)
    return jnp.sum(cdf < u * cdf[-1], axis=0).astype(jnp.int32)


def _column_rule(phi: Float[Array, "q n"], old: Int[Array, " n"], u: Float[Array, "n n_uniforms"], beta, method: str):
    """`_site_rule` for one site of n chains at once, from the local fields as columns phi
    (q, n): the same update and the same random numbers, every operation along the chains."""
    if method == "gibbs":
        new = _inverse_cdf_columns(beta * phi, u[:, 0]).astype(old.dtype)
        return new, SiteInfo(jnp.ones_like(old, bool), new != old)
    q = phi.shape[0]
    colours = jnp.arange(q)[:, None]
    prop = _proposal(u[:, 0], old, q)
    diff = jnp.sum(jnp.where(colours == prop, phi, 0) - jnp.where(colours == old, phi, 0), axis=0)
    accept = jnp.log(u[:, 1]) < beta * diff
    return jnp.where(accept, prop, old), SiteInfo(accept, accept)


class _BlockState(NamedTuple):
    """What the factored block sweep carries from one sweep to the next: the states
    transposed and padded to whole blocks, (Lp, n_chains), and the columns U(., s_j) of every
    site and chain, (Lp, q, n_chains), kept up to date block by block."""

    ST: Int[Array, "Lp n_chains"]
    XU: Float[Array, "Lp q n_chains"]


def _block_padding(L: int, block: int) -> tuple[int, int]:
    B = min(block, L)
    return B, -(-L // B) * B - L


def _U_columns(U: Float[Array, "q q"], S: Int[Array, "m n"]) -> Float[Array, "m q n"]:
    return jnp.moveaxis(U[:, S], 0, 1)  # U(., s) (U is symmetric)


def _block_state(model: FactoredPotts, states: Int[Array, "n_chains L"], block: int) -> _BlockState:
    _, pad = _block_padding(model.L, block)
    ST = jnp.pad(states.T, ((0, pad), (0, 0)))  # padded sites keep colour 0: they have no couplings
    return _BlockState(ST, _U_columns(model.U, ST))


def _factored_block_sweep(model: FactoredPotts, beta, method, u, state: _BlockState, block: int):
    r"""Sequential sweep of a factored model with block-wise local fields.

    The local fields $\phi_k = h_k + \sum_j J_{kj} U(\cdot, s_j)$ of a block of B sites are
    computed for all chains at once by one matrix product $J_{K,:}\,[U(\cdot, s_j)]_j$ (a GEMM
    over $(B, L) \times (L, q\,n_\text{chains})$); while the block's sites are updated one by
    one, a change $s_k: a \to a'$ adds $J_{K,k}\,(U(\cdot,a') - U(\cdot,a))$ to the block's
    fields. Per sweep that is $2L^2 n q$ flops of GEMM plus $O(L B n q)$ updates, against
    $O(L^2 n)$ gathers (Metropolis) or $O(L^2 n q)$ (Gibbs) for the one-chain kernel. Fields
    are laid out (B, q, n_chains) so that the per-site work (softmax, inverse CDF, field
    update) runs along the chain axis. It uses the same random numbers as the kernel path, so
    both give the same chain up to floating-point rounding of the fields.
    """
    L, q = model.L, model.q
    B, pad = _block_padding(L, block)
    Lp, n_chains = state.ST.shape
    n_blocks = Lp // B
    # Padded sites have zero couplings: they are updated like the others (their colours are
    # never read by a real site) and left out of the counts.
    J = jnp.pad(model.J, ((0, pad), (0, pad)))
    h = jnp.pad(model.fields, ((0, pad), (0, 0)))
    U = model.U
    u = jnp.pad(u, ((0, pad), (0, 0), (0, 0)), constant_values=0.5)
    colours = jnp.arange(q)[:, None]

    def block_step(carry, b):
        ST, XU, counts = carry
        J_K = jax.lax.dynamic_slice_in_dim(J, b * B, B, axis=0)  # (B, Lp)
        J_KK = jax.lax.dynamic_slice_in_dim(J_K, b * B, B, axis=1)  # (B, B)
        h_K = jax.lax.dynamic_slice_in_dim(h, b * B, B, axis=0)
        S_K = jax.lax.dynamic_slice_in_dim(ST, b * B, B, axis=0)  # (B, n) colours at block start
        u_K = jax.lax.dynamic_slice_in_dim(u, b * B, B, axis=0)  # (B, n, n_uniforms)
        # (contracting XU's leading axis directly: reshaping (q, n) into one axis would make
        # XLA gather chains sharded over devices)
        Phi = einsum("kj,jan->kan", J_K, XU) + h_K[:, :, None]

        # Only the block's own fields change inside the block; ST and XU are written once after.
        def site_step(carry, xs):
            Phi, counts = carry
            i, old, u_i, J_col = xs
            phi = jax.lax.dynamic_index_in_dim(Phi, i, keepdims=False)  # (q, n)
            new, info = _column_rule(phi, old, u_i, beta, method)
            # U (onehot(new) - onehot(old)): a tiny GEMM, cheaper than two column gathers.
            delta = (colours == new).astype(U.dtype) - (colours == old).astype(U.dtype)
            Phi = Phi + J_col[:, None, None] * matmul(U, delta)[None]
            return (Phi, counts + _count(info, b * B + i < L)), new

        (_, counts), new_K = jax.lax.scan(site_step, (Phi, counts), (jnp.arange(B), S_K, u_K, J_KK.T))
        ST = jax.lax.dynamic_update_slice_in_dim(ST, new_K, b * B, axis=0)
        XU = jax.lax.dynamic_update_slice_in_dim(XU, _U_columns(U, new_K), b * B, axis=0)
        return (ST, XU, counts), None

    counts = jnp.zeros((n_chains, 2), jnp.int32)
    (ST, XU, counts), _ = jax.lax.scan(block_step, (*state, counts), jnp.arange(n_blocks))
    return _BlockState(ST, XU), counts


def _factored_sequential_sweep(model: FactoredPotts, beta, method, u, states, block: int):
    """`_factored_block_sweep` on (n_chains, L) states."""
    state, counts = _factored_block_sweep(model, beta, method, u, _block_state(model, states, block), block)
    return state.ST[: model.L].T, counts


# Sites per block of the dense sequential XLA sweep (`_dense_block_sweep`). Measured at L = 200,
# q = 21, 500 chains on one core: 8 sites ran a sweep in 40 ms, 4 in 55 ms, 16 no faster than 8.
_DENSE_BLOCK = 8


def _coupling_rows(couplings: Float[Array, "L L q q"]) -> Float[Array, "L q L q"]:
    r"""The dense couplings laid out as rows $R[j, b, k, a] = J_{jk}(b, a) = J_{kj}(a, b)$
    (adabmDCA's [j, b, k, a] order): for a neighbour j in colour b, the couplings to every
    colour of a block of consecutive sites are one contiguous row. One transposed copy of the
    couplings, made once per `sample` call (and per `sweep` call)."""
    return jnp.transpose(couplings, (0, 2, 1, 3))


# `sample` makes the dense block sweeps' layout once, not in every jitted block of sweeps.
_coupling_rows_jit = jax.jit(_coupling_rows)


def _dense_block_sweep(model: PottsModel, rows: Float[Array, "L q L q"], beta, method, u, ST, block: int):
    r"""Sequential sweep of a dense model with block-wise local fields; ST: (L, n_chains).

    For a block $K$ of B consecutive sites, the fields
    $\phi_k(a) = h_k(a) + \sum_j J_{kj}(a, s_j)$, $k \in K$, of every chain are one sum over
    the L neighbours of gathered rows $R[j, s_j, K]$ (`_coupling_rows`: B q contiguous floats
    per neighbour and chain, read with one index); while the block's sites are updated in
    order, a change $s_k: b \to b'$ adds $R[k, b', K] - R[k, b, K]$ to the block's fields. The
    work is the $L^2 q$ reads per chain and sweep of the one-chain kernel, but XLA:CPU emits a
    gather of q floats per neighbour as scalar index arithmetic around four-wide loads with
    spilled addresses; rows of B q floats amortise the index over 8x the data and are loaded
    eight wide (measured at L = 200, q = 21: 40 ms per sweep of 500 chains on one core,
    against 100 ms). Same random numbers and rules as `_sequential_sweep`: the same chains up
    to the rounding of the fields. The last block starts at L - B and skips the sites the
    previous block updated, so L need not be a multiple of B and nothing is padded.
    """
    L, q = model.L, model.q
    B = min(block, L)
    n_chains = ST.shape[1]

    def block_rows(j, start, s):  # (n, B q): R[j, s_c, start : start + B] for every chain c
        slab = jax.lax.dynamic_slice(rows, (j, 0, start, 0), (1, q, B, q)).reshape(q, B * q)
        # unsigned indices: no wrap-around of negative indices in the gather's index arithmetic
        return slab.at[s.astype(jnp.uint32)].get(mode="clip")

    def block_step(carry, b):
        ST, counts = carry
        start = jnp.minimum(b * B, L - B)
        h_K = jax.lax.dynamic_slice_in_dim(model.fields, start, B).reshape(B * q)

        def add(acc, xs):
            j, s_j = xs
            return acc + block_rows(j, start, s_j), None

        Phi0 = jnp.broadcast_to(h_K, (n_chains, B * q))
        Phi, _ = jax.lax.scan(add, Phi0, (jnp.arange(L), ST), unroll=_NEIGHBOUR_UNROLL)

        def site_step(carry, i):
            Phi, ST, counts = carry
            k = start + i
            old = ST[k]
            phi = jax.lax.dynamic_slice_in_dim(Phi, i * q, q, axis=1).T  # (q, n)
            new, info = _column_rule(phi, old, u[k], beta, method)
            fresh = k >= b * B  # not already updated by the previous block
            new = jnp.where(fresh, new, old)
            Phi = Phi + (block_rows(k, start, new) - block_rows(k, start, old))  # exact 0 if unchanged
            return (Phi, ST.at[k].set(new), counts + _count(info, fresh)), None

        (_, ST, counts), _ = jax.lax.scan(site_step, (Phi, ST, counts), jnp.arange(B))
        return (ST, counts), None

    (ST, counts), _ = jax.lax.scan(block_step, (ST, jnp.zeros((n_chains, 2), jnp.int32)), jnp.arange(-(-L // B)))
    return ST, counts


def _uses_dense_blocks(model: AnyPotts, schedule: str, kernel: str) -> bool:
    return isinstance(model, PottsModel) and schedule == "sequential" and kernel == "xla" and _DENSE_BLOCK > 0


def _uses_blocks(model: AnyPotts, schedule: str, block: int, kernel: str) -> bool:
    return isinstance(model, FactoredPotts) and schedule == "sequential" and block > 0 and kernel == "xla"


def _sweep_uniforms(model: AnyPotts, key: PRNGKeyArray, n_chains: int, method: str):
    """(site keys, uniforms (L, n_chains, n_uniforms)) of one sweep."""
    k_sites, k_steps = jax.random.split(key)
    return k_sites, _uniforms(k_steps, (model.L, n_chains, _N_UNIFORMS[method]), model.fields.dtype)


def sweep(
    model: AnyPotts,
    key: PRNGKeyArray,
    states: Int[Array, "n_chains L"],
    *,
    method: str = "gibbs",
    beta: ScalarLike = 1.0,
    schedule: str = "sequential",
    kernel: str | Kernel = "auto",
) -> tuple[Int[Array, "n_chains L"], Int[Array, 2]]:
    """One sweep (L site updates per chain) over all chains; returns states and the counts
    (accepted, changed) of its updates.

    `sequential` visits sites 0..L-1 in order, the same site in every chain (dense models use
    block-wise fields of 8 sites from a transposed copy of the couplings, made in every call,
    which costs about one sweep: `sample` makes it once for all its sweeps; factored models use
    block-wise GEMM fields of `Kernel.factored_block` sites, default 8; 0: the one-chain
    kernel); `random` draws an
    independent uniform site for each update of each chain, using the one-chain kernels
    (`gibbs_kernel`, `metropolis_kernel`) vmapped over chains. `kernel`: a `Kernel` or its name.
    """
    _check_method_schedule(method, schedule)
    kernel = _as_kernel(kernel)
    block = _factored_block(method, kernel.factored_block)
    kernel = _resolve_kernel(kernel.name, schedule, dtype=model.fields.dtype)
    states, counts = _chain_sweep(model, key, states, method, beta, schedule, block, kernel)
    return states, jnp.sum(counts, axis=0)


def sweeps(
    model: AnyPotts,
    key: PRNGKeyArray,
    states: Int[Array, "n_chains L"],
    n_sweeps: int | Int[Array, ""],
    *,
    method: str = "gibbs",
    beta: ScalarLike = 1.0,
    schedule: str = "sequential",
    kernel: str | Kernel = "auto",
) -> tuple[Int[Array, "n_chains L"], Int[Array, 2]]:
    """`n_sweeps` sweeps of all chains at a fixed model, sweep i with the key
    ``jax.random.fold_in(key, i)``; returns the states and the summed counts (accepted,
    changed). Equals `n_sweeps` calls of `sweep` with those keys, but the implementation's
    layout (the dense block sweeps' transposed couplings, the factored blocks' fields, the fused
    kernel's padded operands) is made once per call, not once per sweep: the loop of
    persistent-chain methods (Boltzmann learning) should call this. Traceable inside `jit`;
    `n_sweeps` may be a traced integer."""
    _check_method_schedule(method, schedule)
    kernel = _as_kernel(kernel)
    block = _factored_block(method, kernel.factored_block)
    name = _resolve_kernel(kernel.name, schedule, dtype=model.fields.dtype)
    rows = _coupling_rows(model.couplings) if _uses_dense_blocks(model, schedule, name) else None
    plan = _Plan(method, schedule, 0, block, name)
    counts = _no_counts(states)
    states, counts = _run_sweeps(model, rows, beta, key, plan, 0, n_sweeps, states, counts)
    return states, jnp.sum(counts, axis=0)


def _check_method_schedule(method: str, schedule: str) -> None:
    if method not in _KERNELS:
        raise ValueError(f"method must be 'gibbs' or 'metropolis', got {method!r}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}")


_KERNEL_CHOICES = ("auto", "xla", "pallas")


def _resolve_kernel(kernel: str, schedule: str, sharded: bool = False, dtype=jnp.float32) -> str:
    """ "xla" or "pallas": "auto" takes the fused Pallas sweep on a GPU backend for sequential
    float32 sweeps of chains on one device, and the XLA kernels everywhere else (float64 models
    keep the XLA kernels: the Pallas kernel's GPU timing is measured in float32 only)."""
    if kernel not in _KERNEL_CHOICES:
        raise ValueError(f"kernel must be one of {_KERNEL_CHOICES}, got {kernel!r}")
    if kernel == "auto":
        pallas = jax.default_backend() == "gpu" and schedule == "sequential" and not sharded
        return "pallas" if pallas and jnp.dtype(dtype) == jnp.float32 else "xla"
    if kernel == "pallas" and schedule != "sequential":
        raise ValueError("kernel='pallas' runs sequential sweeps only; use schedule='sequential' or kernel='xla'")
    if kernel == "pallas" and sharded:
        raise ValueError("kernel='pallas' runs chains on one device; with several devices use kernel='xla'")
    return kernel


def _chain_sweep(model, key, states, method, beta, schedule, block: int, kernel: str):
    """`sweep` with per-chain counts (n_chains, 2)."""
    n_chains, L = states.shape
    k_sites, u = _sweep_uniforms(model, key, n_chains, method)
    if kernel == "pallas":
        from ._pallas_sampling import pallas_sweep

        return pallas_sweep(model, beta, method, u, states)  # interpret mode off GPU
    if _uses_blocks(model, schedule, block, kernel):
        return _factored_sequential_sweep(model, beta, method, u, states, block)
    if _uses_dense_blocks(model, schedule, kernel):
        ST, counts = _dense_block_sweep(model, _coupling_rows(model.couplings), beta, method, u, states.T, _DENSE_BLOCK)
        return ST.T, counts
    if schedule == "sequential":
        return _sequential_sweep(model, beta, method, u, states)
    sites = jax.random.randint(k_sites, (L, n_chains), 0, L)
    return _kernel_sweep(model, beta, method, u, states, sites, 0)


def _sweep_key(key: PRNGKeyArray, index: Int[Array, ""]) -> PRNGKeyArray:
    # Keys depend on the global sweep index only, so results do not depend on how the run is
    # cut into jitted chunks (progress display, block sizes).
    return jax.random.fold_in(key, index)


class _Plan(NamedTuple):
    """The static settings of `_run_block` (hashable: one compiled block per plan)."""

    method: str
    schedule: str
    buffer_size: int
    block: int
    kernel: str


def _run_sweeps(model, rows, beta, key, plan: _Plan, first, n, states, counts):
    """Sweeps first..first+n-1 (keys by global sweep index) of `_run_block`, each
    implementation with its own layout carried between sweeps. rows: `_coupling_rows` of a
    dense model on the block path (made once per `sample` call), else None."""
    method, schedule, _, block, kernel = plan
    n_chains, L = states.shape

    def uniforms(i):
        return _sweep_uniforms(model, _sweep_key(key, first + i), n_chains, method)[1]

    if kernel == "pallas":
        # Operands padded once, states carried in the kernel's layout: one launch per sweep.
        from . import _pallas_sampling as ps

        cfg, ops = ps.config(n_chains), ps.operands(model)

        def pallas_body(i, carry):
            S, counts = carry
            S, c = ps.sweep_kernel_layout(ops, model.q, beta, method, uniforms(i), S, cfg)
            return S, counts + c

        S, counts = jax.lax.fori_loop(0, n, pallas_body, (ps.to_kernel_layout(states, cfg), counts))
        return ps.from_kernel_layout(S, n_chains, L), counts

    if _uses_blocks(model, schedule, block, kernel):
        # Same sweeps as `sweep`, with the block sweep's layout carried between sweeps.
        def block_body(i, carry):
            state, counts = carry
            state, c = _factored_block_sweep(model, beta, method, uniforms(i), state, block)
            return state, counts + c

        state, counts = jax.lax.fori_loop(0, n, block_body, (_block_state(model, states, block), counts))
        return state.ST[:L].T, counts

    if rows is not None:  # dense block sweeps, states carried transposed

        def dense_body(i, carry):
            ST, counts = carry
            ST, c = _dense_block_sweep(model, rows, beta, method, uniforms(i), ST, _DENSE_BLOCK)
            return ST, counts + c

        ST, counts = jax.lax.fori_loop(0, n, dense_body, (states.T, counts))
        return ST.T, counts

    def body(i, carry):
        states, counts = carry
        states, c = _chain_sweep(model, _sweep_key(key, first + i), states, method, beta, schedule, block, kernel)
        return states, counts + c

    return jax.lax.fori_loop(0, n, body, (states, counts))


@partial(jax.jit, static_argnames=("plan",))
def _run_block(model, rows, beta, key, states, start, n_pre, thin, n_record, plan: _Plan):
    """`n_pre` sweeps, then `n_record` samples each after `thin` sweeps (all three dynamic).

    Samples go into a buffer of static size `buffer_size` (rows past n_record are zeros), so
    burn-in chunks and record blocks of any length share one compiled function. Returns the
    states, per-chain counts (accepted, changed) of the recorded part, (n_chains, 2), and the
    buffers. Nothing in it mixes chains, so chains sharded over devices stay sharded.
    """
    n_chains, L = states.shape
    zero = _no_counts(states)
    run_sweeps = partial(_run_sweeps, model, rows, beta, key, plan)
    states, _ = run_sweeps(start, n_pre, states, zero)

    def one_sample(r, carry):
        states, counts, seqs, energies = carry
        states, counts = run_sweeps(start + n_pre + r * thin, thin, states, counts)
        seqs = jax.lax.dynamic_update_index_in_dim(seqs, states, r, axis=1)
        energies = jax.lax.dynamic_update_index_in_dim(energies, _chain_energies(model, states), r, axis=1)
        return states, counts, seqs, energies

    seqs = jnp.zeros((n_chains, plan.buffer_size, L), states.dtype)
    energies = jnp.zeros((n_chains, plan.buffer_size), model.fields.dtype)
    return jax.lax.fori_loop(0, n_record, one_sample, (states, zero, seqs, energies))


# ----------------------------------------------------------------------------- driver


class SampleResult(eqx.Module):
    """Samples and diagnostics of `sample`.

    Attributes:
        sequences: int32 (n_chains, n_samples, L).
        energies: energy of every recorded sample, (n_chains, n_samples).
        acceptance_rate: accepted / proposed site updates after burn-in (1 for Gibbs).
        change_rate: fraction of site updates after burn-in that changed the colour.
        tau: integrated autocorrelation time of the energy, in recorded samples.
        ess: effective sample size of the energy over all chains.
        rhat: split R-hat of the energy across chains.

    `tau`, `ess` and `rhat` are NaN (undefined, not an error) when fewer than
    ``2 * diagnostics.MIN_DRAWS_TAU`` = 10 samples per chain were recorded: the chains are
    split in halves and each half needs ``MIN_DRAWS_TAU`` draws. Test with `math.isnan`;
    `summary()` passes the NaNs on.
    """

    sequences: Int[Array, "n_chains n_samples L"]
    energies: Float[Array, "n_chains n_samples"]
    final_states: Int[Array, "n_chains L"]
    acceptance_rate: float = eqx.field(static=True)
    change_rate: float = eqx.field(static=True)
    tau: float = eqx.field(static=True)
    ess: float = eqx.field(static=True)
    rhat: float = eqx.field(static=True)
    method: str = eqx.field(static=True)
    beta: float = eqx.field(static=True)

    def summary(self) -> dict:
        """Diagnostics as a JSON-ready dict."""
        n_chains, n_samples, L = self.sequences.shape
        e = np.asarray(self.energies, dtype=np.float64)
        return {
            "method": self.method,
            "beta": self.beta,
            "n_chains": n_chains,
            "n_samples": n_samples,
            "L": L,
            "acceptance_rate": self.acceptance_rate,
            "change_rate": self.change_rate,
            "energy_mean": float(e.mean()),
            "energy_std": float(e.std()),
            "tau": self.tau,
            "ess": self.ess,
            "rhat": self.rhat,
        }


def _initial_states(model: AnyPotts, key: PRNGKeyArray, n_chains: int, init: Any) -> jax.Array:
    if init is None:
        return jax.random.randint(key, (n_chains, model.L), 0, model.q, dtype=jnp.int32)
    init = check_sequences(init, model.L, model.q, name="init")
    if init.ndim == 1:
        init = jnp.broadcast_to(init, (n_chains, model.L))
    if init.shape != (n_chains, model.L):
        raise ValueError(
            f"init must have shape (L,) or (n_chains, L) = ({n_chains}, {model.L}), got {tuple(init.shape)}"
        )
    return init


def _chain_sharding(n_chains: int) -> jax.sharding.NamedSharding | None:
    """Chains split over all local devices of the default backend, when there are several and
    they divide n_chains (on CPU: `jax.config.update("jax_num_cpu_devices", os.cpu_count())`
    before JAX starts makes one device per core). XLA:CPU runs each device's program on its own
    thread, while the single-device sampler loops run on about one core. The random numbers do
    not depend on the sharding: the same key gives the same samples on any number of devices."""
    devices = jax.local_devices()
    if len(devices) < 2 or n_chains % len(devices):
        return None
    mesh = jax.make_mesh((len(devices),), ("chains",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chains"))


def _energy_diagnostics(energies: np.ndarray) -> tuple[float, float, float]:
    """tau, ESS and split R-hat of the energy; NaN (undefined) for too short runs."""
    n_chains, n_samples = energies.shape
    if n_samples < 2 * diagnostics.MIN_DRAWS_TAU:
        return float("nan"), float("nan"), float("nan")
    summary = diagnostics.summarize(energies)
    return summary["tau"], summary["ess"], summary["rhat"]


def sample(
    model: AnyPotts,
    key: PRNGKeyArray,
    *,
    n_chains: int,
    n_samples: int,
    n_burnin: int,
    thin: int = 1,
    method: str = "gibbs",
    beta: float = 1.0,
    schedule: str = "sequential",
    init: Int[Array, "n_chains L"] | None = None,
    progress: bool | None = None,
    max_memory: Any = None,
    kernel: str | Kernel = "auto",
) -> SampleResult:
    r"""Sample $p(s) \propto e^{-\beta E(s)}$ with vmapped single-site MCMC chains.

    Each chain runs `n_burnin` sweeps, then records `n_samples` samples, each after `thin`
    sweeps (a sweep is L site updates per chain). Chains start from `init` (shape (L,) or
    (n_chains, L)) or from uniformly random colours.

    With several local devices (on CPU: `jax.config.update("jax_num_cpu_devices", n)` before
    JAX starts), the chains are split over them when their number divides n_chains; the
    samples do not depend on the split.

    Args:
        model: a joint `PottsModel` or `FactoredPotts` (non-symmetric couplings are refused).
        key: PRNG key; the same key gives the same samples.
        method: "gibbs" (heat bath) or "metropolis".
        schedule: "sequential" sweeps (default, fastest) or "random" sites per update.
        progress: show a progress bar (None: only when stderr is a terminal).
        max_memory: budget of the up-front memory check (`jaxpotts.memory`; None: the
            available memory; a size such as "8G"; "unlimited" skips it). A run whose estimated
            peak (model, chains, recorded samples) exceeds it raises `MemoryLimitError`.
        kernel: the implementation, a `Kernel` or its name: "auto" (default: the fused Pallas
            sweep on a GPU for sequential float32 sweeps on one device, the XLA kernels
            otherwise), "xla" or "pallas"; `Kernel(name, factored_block=...)` also sets the block
            size of the factored XLA sweep.

    Returns:
        `SampleResult` with `.sequences[n_chains, n_samples, L]` (int32), energies, acceptance
        rate, and energy autocorrelation time, ESS and split R-hat (`jaxpotts.diagnostics`).
    """
    if not isinstance(model, (PottsModel, FactoredPotts)):
        raise TypeError(f"model must be a PottsModel or FactoredPotts, got {type(model).__name__}")
    check_joint(model, "sampling")
    for name in ("fields", "couplings", "J", "U"):  # a loaded file bypasses the constructor's checks
        if isinstance(getattr(model, name, None), (jax.Array, np.ndarray)):
            check_finite(getattr(model, name), f"the model's {name}")
    n_chains = check_count(n_chains, "n_chains", 1)
    n_samples = check_count(n_samples, "n_samples", 1)
    n_burnin = check_count(n_burnin, "n_burnin", 0)
    thin = check_count(thin, "thin", 1)
    _check_method_schedule(method, schedule)
    kernel = _as_kernel(kernel)
    block = _factored_block(method, kernel.factored_block)
    kernel = kernel.name
    if not (isinstance(beta, (int, float, np.floating, np.integer)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")

    n_devices = 1 if _chain_sharding(n_chains) is None else len(jax.local_devices())
    check_memory(
        sample_estimate(
            model.L,
            model.q,
            n_chains,
            n_samples,
            dense=isinstance(model, PottsModel),
            dtype=model.fields.dtype,
            n_devices=n_devices,
        ),
        f"sampling {n_chains} chains x {n_samples} samples (L={model.L}, q={model.q})",
        max_memory,
    )

    k_init, k_run = jax.random.split(key)
    states = _initial_states(model, k_init, n_chains, init)
    sharding = _chain_sharding(n_chains) if kernel != "pallas" else None
    kernel = _resolve_kernel(kernel, schedule, sharded=sharding is not None, dtype=model.fields.dtype)
    if sharding is not None:
        states = jax.device_put(states, sharding)
    # The model goes whole to every device that runs chains: arrays left split over a mesh
    # (a fit's parameters can be) would cost a collective in every site update, 50x slower.
    model = to_one_device(model) if sharding is None else replicate(model, sharding.mesh)
    beta_arr = jnp.asarray(beta, model.fields.dtype)
    rows = _coupling_rows_jit(model.couplings) if _uses_dense_blocks(model, schedule, kernel) else None
    # A few dozen chunks: enough for a live display, few enough that dispatch costs nothing.
    burn_chunk = max(1, -(-n_burnin // 20))
    record_block = max(1, -(-n_samples // 20))
    opts = dict(plan=_Plan(method, schedule, record_block, block, kernel))

    total = n_burnin + n_samples * thin
    counts = np.zeros(2, np.int64)
    seq_blocks, energy_blocks = [], []
    with progress_bar(total, f"{method} sampling", progress, unit="sweep") as bar:
        done = 0
        while done < n_burnin:
            n = min(burn_chunk, n_burnin - done)
            states, _, _, _ = _run_block(model, rows, beta_arr, k_run, states, done, n, thin, 0, **opts)
            done += n
            bar.update(n)
        recorded = 0
        while recorded < n_samples:
            n = min(record_block, n_samples - recorded)
            start = n_burnin + recorded * thin
            states, c, seqs, energies = _run_block(model, rows, beta_arr, k_run, states, start, 0, thin, n, **opts)
            counts += np.asarray(c, np.int64).sum(axis=0)
            seq_blocks.append(seqs[:, :n])
            energy_blocks.append(energies[:, :n])
            recorded += n
            bar.update(n * thin)

    sequences = jnp.concatenate(seq_blocks, axis=1)
    energies = jnp.concatenate(energy_blocks, axis=1)
    n_updates = n_samples * thin * n_chains * model.L
    tau, ess, rhat = _energy_diagnostics(np.asarray(energies))
    return SampleResult(
        sequences=sequences,
        energies=energies,
        final_states=states,
        acceptance_rate=float(counts[0] / n_updates),
        change_rate=float(counts[1] / n_updates),
        tau=tau,
        ess=ess,
        rhat=rhat,
        method=method,
        beta=float(beta),
    )

r"""Dense pseudo-likelihood by row gathers: the hot loop of plmDCA fits.

A dense Potts model is stored here as the matrix $W \in \mathbb R^{Lq \times Lq}$,
$W[(j,b),(i,a)] = J_{ij}(a,b)$ (`coupling_matrix`). The coupling part of the local fields of a
sequence s is a sum of L rows of W:

$$\phi_{(i,a)}(s) - h_i(a) = \sum_j J_{ij}(a, s_j) = \sum_j W[(j, s_j), (i,a)] .$$

With the one-hot encoding $X \in \{0,1\}^{M \times Lq}$ this is the product $X W$, but a GEMM
spends q times more multiply-adds than needed (X has L ones per row out of Lq). Gathering and
adding the L rows costs $M L \cdot Lq$ additions, and the gradient $X^\top R$ is the matching
scatter-add of rows. Both loop over blocks of up to 512 sequences inside one `lax.scan` (as few
blocks as the bounds allow: each loop iteration has a fixed cost, `block_size`), and nothing of
size (M, Lq) is ever stored.

`weighted_nll_sum` fuses the forward pass, the log-softmax and the backward pass of the
weighted pseudo-likelihood into that one loop: under differentiation its forward rule returns
the value *and* the gradient (one gather and one scatter per sequence and site), and its
backward rule only scales them. Without differentiation only the value is computed.

**Gaps as missing data** (``gap`` = the gap colour; plmc's ``-g``, the EVmutation setting):
the gap is then no state of the conditionals. A site where sequence m has a gap contributes no
term, a gapped neighbour contributes no coupling, and the conditional of a non-gap site is a
softmax over the q - 1 non-gap colours only:

$$\ell_m = \sum_{i:\, s^m_i \ne g} -\log \frac{\exp \phi_i(s^m_i)}{\sum_{a \ne g} \exp \phi_i(a)},
\qquad \phi_i(a) = h_i(a) + \sum_{j \ne i:\, s^m_j \ne g} J_{ij}(a, s^m_j).$$

The kernel gathers an out-of-range row (filled with zeros) for a gapped neighbour and drops its
scatter, sets the gap logit to $-\infty$ and zeroes the residual of gapped sites, so the value
does not depend on $h_i(g)$, $J_{ij}(g, \cdot)$ or $J_{ij}(\cdot, g)$ and their gradient is
exactly zero.

Measured on two shared CPU cores for PF00763 (M = 11418, L = 116, q = 21), blocks of 504: one
value 0.19 s, value and gradient 0.61 s, against 2.8 s and 1.6 s for the gather's and the
scatter's equivalent one-hot GEMMs.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Float, Int, Scalar

from .sharding import DATA_AXIS, pad_rows

# Sequences per block. The loop over blocks and sites runs M / B x L iterations, and on a CPU each
# iteration of a compiled loop costs microseconds of its own: for PF00763 (M = 11418, L = 116)
# blocks of 32 took 1.40 s per value and gradient and blocks of 512 0.61 s (PF00014 52 -> 45 ms,
# L = 406: 2.7 s -> 1.4 s with blocks of 8 -> 256), so blocks are as large as these bounds allow.
MAX_BLOCK = 512
_MAX_BLOCK_FLOATS = 1 << 22  # one (B, Lq) accumulator: at most 16 MB in float32


def block_size(K: int, M: int) -> int:
    """Sequences per block for M rows of length K: the fewest blocks of at most `MAX_BLOCK` rows
    (and B K <= 2^22), filled evenly, B a multiple of 8."""
    cap = max(8, min(MAX_BLOCK, _MAX_BLOCK_FLOATS // max(K, 1)) // 8 * 8)
    n_blocks = max(1, -(-M // cap))
    per_block = -(-M // n_blocks)
    return max(8, -(-per_block // 8) * 8)


def coupling_matrix(couplings: Float[Array, "L L q q"]) -> Float[Array, "Lq Lq"]:
    r"""$W[(j,b),(i,a)] = J_{ij}(a,b)$ from couplings indexed [i, j, a, b]."""
    L, _, q, _ = couplings.shape
    return couplings.transpose(1, 3, 0, 2).reshape(L * q, L * q)


def _blocks(x, block: int, fill=0):
    """Split the leading axis into blocks of `block` rows, padding with `fill`."""
    n = -(-x.shape[0] // block)
    pad = n * block - x.shape[0]
    if pad:
        x = jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], fill, x.dtype)])
    return x.reshape((n, block) + x.shape[1:])


def _gather_rows(W, rows, missing: bool = False):
    """$\\sum_j W[\\mathrm{rows}_{:, j}]$ for one block: (B, L) indices -> (B, K). With
    `missing`, an index past the last row (a gapped neighbour) adds zeros."""

    def add_site(acc, j):
        if missing:
            return acc + W.at[rows[:, j]].get(mode="fill", fill_value=0), None
        return acc + W[rows[:, j]], None

    acc0 = jnp.zeros((rows.shape[0], W.shape[1]), W.dtype)
    return jax.lax.scan(add_site, acc0, jnp.arange(rows.shape[1]))[0]


def _scatter_rows(dW, rows, R, missing: bool = False):
    """dW[rows[m, j]] += R[m] for one block; with `missing`, indices past the last row are dropped."""

    def add_site(dW, j):
        if missing:
            return dW.at[rows[:, j]].add(R, mode="drop"), None
        return dW.at[rows[:, j]].add(R), None

    return jax.lax.scan(add_site, dW, jnp.arange(rows.shape[1]))[0]


def _block_terms(h, W, s, gap):
    """Row indices, log-conditionals, per-sequence NLL and the sites that count (None: all) of
    one block; `gap` (a colour or None) treats gaps as missing data (module docstring)."""
    B, L = s.shape
    q = h.shape[1]
    rows = s + q * jnp.arange(L, dtype=s.dtype)
    if gap is None:
        logits = _gather_rows(W, rows).reshape(B, L, q) + h
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.sum(jnp.take_along_axis(logp, s[:, :, None], axis=-1)[..., 0], axis=-1)
        return rows, logp, nll, None
    present = s != gap
    rows = jnp.where(present, rows, W.shape[0])  # past the last row: gathers zeros, scatter dropped
    logits = _gather_rows(W, rows, missing=True).reshape(B, L, q) + h
    logits = jnp.where(jnp.arange(q) == gap, -jnp.inf, logits)
    logp = jax.nn.log_softmax(logits, axis=-1)
    site = jnp.take_along_axis(logp, s[:, :, None], axis=-1)[..., 0]
    nll = -jnp.sum(jnp.where(present, site, 0.0), axis=-1)
    return rows, logp, nll, present


def _split(h, seqs, weights):
    K = h.size
    B = block_size(K, seqs.shape[0])
    s = _blocks(seqs.astype(jnp.int32), B)
    w = _blocks(weights.astype(h.dtype), B)  # padded sequences get weight 0
    return s, w


def _value(h, W, seqs, weights, gap=None):
    s, w = _split(h, seqs, weights)

    def step(total, xs):
        sb, wb = xs
        nll = _block_terms(h, W, sb, gap)[2]
        return total + jnp.sum(wb * nll), nll

    total, nll = jax.lax.scan(step, jnp.zeros((), h.dtype), (s, w))
    return total, nll.reshape(-1)[: seqs.shape[0]]


def _value_and_grad(h, W, seqs, weights, gap=None):
    s, w = _split(h, seqs, weights)
    q = h.shape[1]

    def step(carry, xs):
        total, gh, gW = carry
        sb, wb = xs
        rows, logp, nll, present = _block_terms(h, W, sb, gap)
        R = wb[:, None, None] * (jnp.exp(logp) - jax.nn.one_hot(sb, q, dtype=logp.dtype))
        if present is not None:
            R = jnp.where(present[:, :, None], R, 0.0)
        gh = gh + jnp.sum(R, axis=0)
        gW = _scatter_rows(gW, rows, R.reshape(R.shape[0], -1), missing=gap is not None)
        return (total + jnp.sum(wb * nll), gh, gW), nll

    init = (jnp.zeros((), h.dtype), jnp.zeros_like(h), jnp.zeros_like(W))
    (total, gh, gW), nll = jax.lax.scan(step, init, (s, w))
    return total, nll.reshape(-1)[: seqs.shape[0]], gh, gW


def _sharded(fn, mesh, n_sums: int):
    """Run `fn(h, W, seqs, weights) -> (*sums, nll)` on row shards of `mesh`: the sums are added
    over devices, the per-sequence `nll` stays split like the rows (then unpadded)."""
    if mesh is None or mesh.size == 1:
        return fn

    def run(h, W, seqs, weights):
        M = seqs.shape[0]
        seqs, weights = pad_rows(mesh.size, seqs, weights)

        def local(h, W, s, w):
            *sums, nll = fn(h, W, s, w)
            return (*(jax.lax.psum(x, DATA_AXIS) for x in sums), nll)

        rows = PartitionSpec(DATA_AXIS)
        out = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(PartitionSpec(), PartitionSpec(), rows, rows),
            out_specs=(PartitionSpec(),) * n_sums + (rows,),
            check_vma=False,
        )(h, W, seqs, weights)
        return (*out[:-1], out[-1][:M])

    return run


def _grads_nll_last(h, W, seqs, weights, gap=None):
    total, nll, gh, gW = _value_and_grad(h, W, seqs, weights, gap)
    return total, gh, gW, nll


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def weighted_nll_sum(
    h: Float[Array, "L q"],
    W: Float[Array, "Lq Lq"],
    seqs: Int[Array, "M L"],
    weights: Float[Array, " M"],
    mesh: Mesh | None = None,
    gap: int | None = None,
) -> Scalar:
    r"""$\sum_m w_m \sum_i -\log \mathrm{softmax}_a\big(h_i(a) + \sum_j W[(j,s^m_j),(i,a)]\big)[s^m_i]$.

    The weighted (unnormalised) negative log pseudo-likelihood of a dense model given as fields
    `h` (L, q) and coupling matrix `W` (Lq, Lq) (see `coupling_matrix`; its diagonal blocks
    must be zero, or be masked by the caller, for these to be the Potts conditionals).
    Differentiable in h, W and the weights (reverse mode; the gradient is computed in the same
    pass as the value). With a `mesh` (`jaxpotts.sharding.data_mesh`) the sequences are split
    over its devices and the partial sums added. With `gap` (a colour), gaps are missing data:
    gapped sites and neighbours drop out and the softmax runs over the other q - 1 colours
    (module docstring).
    """
    return _sharded(partial(_value, gap=gap), mesh, 1)(h, W, seqs, weights)[0]


def _fwd(h, W, seqs, weights, mesh, gap):
    total, gh, gW, nll = _sharded(partial(_grads_nll_last, gap=gap), mesh, 3)(h, W, seqs, weights)
    return total, (gh, gW, nll, seqs)


def _bwd(mesh, gap, res, ct):
    gh, gW, nll, seqs = res
    # Integer sequences take a float0 cotangent.
    seq_ct = np.zeros(seqs.shape, jax.dtypes.float0)
    return ct * gh, ct * gW, seq_ct, (ct * nll).astype(nll.dtype)


weighted_nll_sum.defvjp(_fwd, _bwd)


def sequence_nll(
    h: Float[Array, "L q"], W: Float[Array, "Lq Lq"], seqs: Int[Array, "M L"], gap: int | None = None
) -> Float[Array, " M"]:
    r"""Per-sequence negative log pseudo-likelihood $\sum_i -\log p(s^m_i \mid s^m_{-i})$ (value
    only; with `gap`, gaps as missing data as in `weighted_nll_sum`)."""
    return _value(h, W, seqs, jnp.ones(seqs.shape[:1], h.dtype), gap)[1]

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
size (M, Lq) is ever stored. For large L (Lq >= 4096) the loop also runs over column tiles of
whole output sites (`tile_sites`: 24 sites for q = 21): the conditionals of different sites are
separate softmaxes, so each tile's value and gradient are complete, and a block's (B, tile)
accumulator stays in cache instead of a (B, Lq) one streaming through memory.

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


# Column tiles. With L q >= MIN_TILED_COLUMNS the loop runs over tiles of TILE_COLUMNS // q output
# sites (whole sites, so each tile holds complete conditionals): a block's accumulator (B rows x
# the tile) stays in a core's L2 cache and the tile's coupling columns in L3, instead of
# streaming a (B, Lq) accumulator (17 MB at L = 406) through memory for every neighbour site.
# One value and gradient (2 cores): L = 406, M = 1024: 1.6 s -> 0.97 s; L = 230, M = 2048:
# 0.97 -> 0.49 s; L = 116, M = 4096: 216 vs 207 ms (so below the threshold the loop is as before).
TILE_COLUMNS = 512
MIN_TILED_COLUMNS = 4096


def tile_sites(L: int, q: int) -> int:
    """Output sites per column tile: L (one tile) when L q < `MIN_TILED_COLUMNS`, else
    `TILE_COLUMNS` // q (at least 1)."""
    if L * q < MIN_TILED_COLUMNS:
        return L
    return max(1, min(L, TILE_COLUMNS // q))


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


def _block_terms(h, W, s, gap, out=None, counted=None):
    """Row indices, log-conditionals, per-sequence NLL and the terms that count (None: all) of
    one block; `gap` (a colour or None) treats gaps as missing data (module docstring).

    `W` may be a column tile: the conditionals of the sites whose colours are `out` (B, S) and
    whose fields are `h` (S, q); `counted` (S,) marks the tile's sites that count (a tile that
    overlaps the previous one repeats some). By default the tile is the whole matrix."""
    B, L = s.shape
    q = h.shape[1]
    out = s if out is None else out
    rows = s + q * jnp.arange(L, dtype=s.dtype)
    if gap is not None:  # a gapped neighbour: past the last row, gathers zeros, scatter dropped
        rows = jnp.where(s != gap, rows, W.shape[0])
    logits = _gather_rows(W, rows, missing=gap is not None).reshape(B, -1, q) + h
    if gap is not None:
        logits = jnp.where(jnp.arange(q) == gap, -jnp.inf, logits)
    logp = jax.nn.log_softmax(logits, axis=-1)
    site = jnp.take_along_axis(logp, out[:, :, None], axis=-1)[..., 0]
    terms = None if gap is None else out != gap
    if counted is not None:
        terms = counted[None, :] if terms is None else terms & counted[None, :]
    nll = -jnp.sum(site if terms is None else jnp.where(terms, site, 0.0), axis=-1)
    return rows, logp, nll, terms


def _split(h, seqs, weights, K):
    B = block_size(K, seqs.shape[0])
    s = _blocks(seqs.astype(jnp.int32), B)
    w = _blocks(weights.astype(h.dtype), B)  # padded sequences get weight 0
    return s, w


def _tiles(L: int, q: int):
    """(sites per tile S, number of tiles, tile starts): the last tile ends at the last site and
    may overlap the one before."""
    S = tile_sites(L, q)
    n = -(-L // S)
    return S, n, jnp.minimum(jnp.arange(n) * S, L - S)


def _tile(h, W, t, start, S):
    """Tile t starting at site `start`: its fields, coupling columns, output colours and the sites
    it counts (those no earlier tile covered)."""
    q = h.shape[1]
    h_t = jax.lax.dynamic_slice_in_dim(h, start, S, axis=0)
    W_t = jax.lax.dynamic_slice_in_dim(W, start * q, S * q, axis=1)
    counted = start + jnp.arange(S) >= t * S
    return h_t, W_t, counted


def _block_value(h_t, W_t, sb, wb, gap, start, counted):
    out = jax.lax.dynamic_slice_in_dim(sb, start, h_t.shape[0], axis=1)
    nll = _block_terms(h_t, W_t, sb, gap, out, counted)[2]
    return jnp.sum(wb * nll), nll


def _value(h, W, seqs, weights, gap=None):
    L, q = h.shape
    S, n_tiles, starts = _tiles(L, q)
    s, w = _split(h, seqs, weights, S * q)

    def tile(total, xs):
        t, start = xs
        h_t, W_t, counted = _tile(h, W, t, start, S)

        def step(acc, ys):
            value, nll = _block_value(h_t, W_t, *ys, gap, start, counted)
            return acc + value, nll

        value, nll = jax.lax.scan(step, jnp.zeros((), h.dtype), (s, w))
        return total + value, nll

    total, nll = _over_tiles(tile, jnp.zeros((), h.dtype), n_tiles, starts)
    return total, jnp.sum(nll, axis=0).reshape(-1)[: seqs.shape[0]]


def _value_and_grad(h, W, seqs, weights, gap=None):
    L, q = h.shape
    S, n_tiles, starts = _tiles(L, q)
    s, w = _split(h, seqs, weights, S * q)

    def tile(carry, xs):
        total, gh, gW = carry
        t, start = xs
        h_t, W_t, counted = _tile(h, W, t, start, S)

        def step(c, ys):
            value, gh_t, gW_t = c
            sb, wb = ys
            out = jax.lax.dynamic_slice_in_dim(sb, start, S, axis=1)
            rows, logp, nll, terms = _block_terms(h_t, W_t, sb, gap, out, counted)
            R = wb[:, None, None] * (jnp.exp(logp) - jax.nn.one_hot(out, q, dtype=logp.dtype))
            if terms is not None:
                R = jnp.where(terms[..., None], R, 0.0)
            gW_t = _scatter_rows(gW_t, rows, R.reshape(R.shape[0], -1), missing=gap is not None)
            return (value + jnp.sum(wb * nll), gh_t + jnp.sum(R, axis=0), gW_t), nll

        init = (jnp.zeros((), h.dtype), jnp.zeros_like(h_t), jnp.zeros_like(W_t))
        (value, gh_t, gW_t), nll = jax.lax.scan(step, init, (s, w))
        if n_tiles == 1:
            return (total + value, gh_t, gW_t), nll
        # Overlapped sites are zero in this tile's gradient: keep what the earlier tile wrote.
        keep = jnp.repeat(counted, q)
        old_h = jax.lax.dynamic_slice_in_dim(gh, start, S, axis=0)
        old_W = jax.lax.dynamic_slice_in_dim(gW, start * q, S * q, axis=1)
        gh = jax.lax.dynamic_update_slice_in_dim(gh, jnp.where(counted[:, None], gh_t, old_h), start, axis=0)
        gW = jax.lax.dynamic_update_slice_in_dim(gW, jnp.where(keep, gW_t, old_W), start * q, axis=1)
        return (total + value, gh, gW), nll

    init = (jnp.zeros((), h.dtype), jnp.zeros_like(h), jnp.zeros_like(W))
    (total, gh, gW), nll = _over_tiles(tile, init, n_tiles, starts)
    return total, jnp.sum(nll, axis=0).reshape(-1)[: seqs.shape[0]], gh, gW


def _over_tiles(tile, init, n_tiles: int, starts):
    """`tile` over the column tiles (a scan), or called once when there is one tile."""
    if n_tiles == 1:
        carry, nll = tile(init, (0, 0))
        return carry, nll[None]
    return jax.lax.scan(tile, init, (jnp.arange(n_tiles), starts))


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

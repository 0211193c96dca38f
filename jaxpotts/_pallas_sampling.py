r"""Fused sequential sweeps in Pallas (`jax.experimental.pallas`): one kernel launch per sweep.

The XLA sweeps of `jaxpotts.sampling` run each site update as a handful of small XLA kernels,
so on a GPU the sampler waits on launches. Here one `pallas_call` performs all L site updates
of a sweep: the grid runs over blocks of `chain_block` chains (one program each), and each
program loops over the sites $k = 0..L-1$ in order and, inside, over the neighbours $j$:

* dense Gibbs: $\phi_k(a) = h_k(a) + \sum_j J_{jk}(s_j, a)$, one gathered row of $q$ per
  neighbour and chain, then $s_k \sim \mathrm{softmax}(\beta\phi_k)$ by the inverse CDF;
* dense Metropolis: $\Delta = h_k(a') - h_k(s_k) + \sum_j [J_{jk}(s_j, a') - J_{jk}(s_j, s_k)]$,
  two gathered scalars per neighbour;
* factored Gibbs: colour counts $c(b) = \sum_j J_{kj} [s_j = b]$, then
  $\phi_k = h_k + U c$ (one small matrix product per site for the whole block of chains);
* factored Metropolis: $\Delta = h_k(a') - h_k(s_k) + \sum_j J_{kj} [U(a', s_j) - U(s_k, s_j)]$.

The factored kernels read $J$ (L, L) and $U$ (q, q) and never build the dense couplings. The
chains' colours stay in the output buffer, (L, chains), which each program reads and writes
one row (a site's colour in its chains) at a time: the block's states (L x chain_block int32,
a few kB) stay in the SM's L1 cache between site updates on a GPU.

Random numbers are the caller's: the same uniforms, with the same layout (L, n_chains,
n_uniforms), as the XLA sequential sweep, and the same update rules (`_inverse_cdf`,
`_proposal`, log(u) < beta Delta). The chains are therefore the XLA kernel's chains; only the
order of the floating-point sums differs (neighbour sums are sequential in both; the colour
products of the factored kernels and the CDF are small matrix products), so equality is exact in
float64 and holds in float32 unless a uniform falls within rounding of a CDF step or
acceptance threshold (tests/test_pallas_sampling.py checks both).

GPU-friendly shapes (Triton needs power-of-two blocks): colours are padded to a power of two
$Q \ge 16$ (padded colours get logit $-\infty$ and are never proposed), chains to a multiple of
`chain_block`. On other backends the kernel runs in Pallas interpret mode (for tests; slow).
All in-kernel products use `precision=HIGHEST` (Pallas-Triton's default is TF32).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jaxtyping import Array, Float, Int

from ._precision import HIGHEST
from .potts import AnyPotts, FactoredPotts

__all__ = ["pallas_sweep", "default_chain_block", "operands", "config", "Operands", "Config"]


def _next_pow2(n: int, minimum: int = 1) -> int:
    return max(minimum, 1 << max(0, (int(n) - 1).bit_length()))


def default_chain_block(n_chains: int) -> int:
    """Chains per program: the largest power of two in [16, 128] that still gives about two
    programs per SM of a large GPU (~132 SMs), so small runs fill the device and large ones
    amortise each program's site loop. 16 is Triton's smallest matrix-product tile."""
    target = max(1, n_chains // 264)
    block = 1 << (target.bit_length() - 1)
    return int(min(128, max(16, block)))


def _interpret() -> bool:
    return jax.default_backend() != "gpu"


def _kernel(beta_ref, h_ref, a_ref, b_ref, S_in, u_ref, S_out, count_ref, *, L, q, Q, CB, method, factored,
            unroll):
    """One program: a sweep of sites 0..L-1 over its block of CB chains.

    Refs: beta (1,); h (L, Q); dense: a = couplings (L, L, q, Q) [j, k, b, a] and b unused;
    factored: a = J (L, L), b = U^T (Q, Q); S_in/S_out (L, n); u (L, n, n_uniforms);
    count (2, n) (accepted, changed).
    """
    chains = pl.ds(pl.program_id(0) * CB, CB)
    dtype = h_ref.dtype
    beta = beta_ref[0]
    colours = jax.lax.broadcasted_iota(jnp.int32, (CB, Q), 1)

    def copy(j, carry):
        S_out[j, chains] = S_in[j, chains]
        return carry

    jax.lax.fori_loop(0, L, copy, 0)

    def neighbour_sum(k, term, init):
        """init + term(0) + ... + term(L-1), in this order; the loop body is unrolled by hand
        (`unroll` neighbours per iteration, so their loads are issued together): Pallas-Triton
        lowers no unrolled `fori_loop`."""
        def add(j, acc):
            return acc + term(j, S_out[j, chains])

        def add_unrolled(i, acc):
            for r in range(unroll):
                acc = add(i * unroll + r, acc)
            return acc

        n_full = L // unroll
        acc = jax.lax.fori_loop(0, n_full, add_unrolled, init)
        return jax.lax.fori_loop(n_full * unroll, L, add, acc)

    def site(k, counts):
        accepted, changed = counts
        old = S_out[k, chains]
        if method == "gibbs":
            if factored:
                # counts[c, b] = sum_j J_kj [s_j(c) = b];  phi = h_k + counts U^T
                weighted = neighbour_sum(
                    k, lambda j, s_j: jnp.where(colours == s_j[:, None], a_ref[k, j], 0.0).astype(dtype),
                    jnp.zeros((CB, Q), dtype))
                acc = jnp.dot(weighted, b_ref[...], precision=HIGHEST, preferred_element_type=dtype)
            else:
                acc = neighbour_sum(k, lambda j, s_j: a_ref[j, k, s_j, :], jnp.zeros((CB, Q), dtype))
            phi = h_ref[k, :][None, :] + acc
            logits = jnp.where(colours < q, beta * phi, -jnp.inf)
            p = jnp.exp(logits - jnp.max(logits, axis=1, keepdims=True))
            upper = (jax.lax.broadcasted_iota(jnp.int32, (Q, Q), 0)
                     <= jax.lax.broadcasted_iota(jnp.int32, (Q, Q), 1)).astype(dtype)
            cdf = jnp.dot(p, upper, precision=HIGHEST, preferred_element_type=dtype)
            total = jnp.sum(jnp.where(colours == Q - 1, cdf, 0.0), axis=1)  # cdf[:, -1] (padded p = 0)
            t = u_ref[k, chains, 0] * total
            new = jnp.sum((cdf < t[:, None]).astype(jnp.int32), axis=1)
            acc_now = jnp.ones_like(old)
        else:
            u0 = u_ref[k, chains, 0]
            shift = jnp.minimum(jnp.floor(u0 * (q - 1)).astype(jnp.int32), q - 2)
            prop = (old + 1 + shift) % q
            dh = h_ref[k, prop] - h_ref[k, old]
            if factored:
                # U^T[b, a] = U(a, b): U(a', s_j) - U(s_k, s_j), weighted by J_kj
                diff = neighbour_sum(k, lambda j, s_j: a_ref[k, j] * (b_ref[s_j, prop] - b_ref[s_j, old]),
                                     jnp.zeros((CB,), dtype))
            else:
                diff = neighbour_sum(k, lambda j, s_j: a_ref[j, k, s_j, prop] - a_ref[j, k, s_j, old],
                                     jnp.zeros((CB,), dtype))
            accept = jnp.log(u_ref[k, chains, 1]) < beta * (dh + diff)
            new = jnp.where(accept, prop, old)
            acc_now = accept.astype(jnp.int32)
        S_out[k, chains] = new
        return accepted + acc_now, changed + (new != old).astype(jnp.int32)

    zero = jnp.zeros((CB,), jnp.int32)
    accepted, changed = jax.lax.fori_loop(0, L, site, (zero, zero))
    count_ref[0, chains] = accepted
    count_ref[1, chains] = changed


class Operands(NamedTuple):
    """The model as the kernel reads it, padded to Q colours once per run (not per sweep):
    h (L, Q); dense: a = couplings (L, L, q, Q), b unused; factored: a = J, b = U^T (Q, Q)."""

    h: Float[Array, "L Q"]
    a: Float[Array, "..."]
    b: Float[Array, "Q Q"]


def operands(model: AnyPotts) -> Operands:
    """`Operands` of a joint model (q >= 2)."""
    q = model.q
    if q < 2:
        raise ValueError(f"the Pallas sweep needs q >= 2 colours, got q = {q}")
    Q = _next_pow2(q, 16)
    dtype = model.fields.dtype
    h = jnp.pad(model.fields, ((0, 0), (0, Q - q)))
    if isinstance(model, FactoredPotts):
        return Operands(h, model.J.astype(dtype), jnp.pad(model.U.T.astype(dtype), ((0, Q - q), (0, Q - q))))
    return Operands(h, jnp.pad(model.couplings, ((0, 0), (0, 0), (0, 0), (0, Q - q))), jnp.zeros((Q, Q), dtype))


class Config(NamedTuple):
    """Static launch settings: chains per program (a power of two >= 16), Triton warps per
    program, neighbour-loop unrolling, Pallas interpret mode."""

    chain_block: int
    num_warps: int
    unroll: int
    interpret: bool


def config(n_chains: int, chain_block: Optional[int] = None, num_warps: Optional[int] = None, unroll: int = 4,
           interpret: Optional[bool] = None) -> Config:
    """`Config` with defaults: `default_chain_block`, 2 warps for blocks of <= 32 chains (else
    4), unroll 4, interpret mode unless the backend is a GPU."""
    if chain_block is None:
        chain_block = default_chain_block(n_chains)
    if isinstance(chain_block, bool) or not isinstance(chain_block, int) or chain_block < 16 \
            or chain_block & (chain_block - 1):
        raise ValueError(f"chain_block must be a power of two >= 16, got {chain_block!r}")
    if num_warps is None:
        num_warps = 2 if chain_block <= 32 else 4
    if not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be an integer >= 1, got {unroll!r}")
    return Config(chain_block, int(num_warps), unroll, _interpret() if interpret is None else bool(interpret))


def padded_chains(n_chains: int, cfg: Config) -> int:
    return -(-n_chains // cfg.chain_block) * cfg.chain_block


def to_kernel_layout(states: Int[Array, "n_chains L"], cfg: Config) -> Int[Array, "L n"]:
    """States transposed and padded to whole chain blocks (padded chains are dropped later)."""
    n_chains = states.shape[0]
    return jnp.pad(states.T.astype(jnp.int32), ((0, 0), (0, padded_chains(n_chains, cfg) - n_chains)))


def sweep_kernel_layout(ops: Operands, q: int, beta, method: str, u: Float[Array, "L n_chains n_uniforms"],
                        ST: Int[Array, "L n"], cfg: Config) -> tuple[Int[Array, "L n"], Int[Array, "n_chains 2"]]:
    """One sweep on states in kernel layout; returns them and the per-chain counts of the real
    chains (the first n_chains = u.shape[1])."""
    L, n = ST.shape
    n_chains = u.shape[1]
    u = u.astype(ops.h.dtype)
    if n > n_chains:
        u = jnp.pad(u, ((0, 0), (0, n - n_chains), (0, 0)), constant_values=0.5)
    beta = jnp.reshape(jnp.asarray(beta, ops.h.dtype), (1,))
    factored = ops.a.ndim == 2
    ST, counts = _call(beta, *ops, ST, u, q=q, method=method, factored=factored, cfg=cfg)
    return ST, counts[:, :n_chains].T


def pallas_sweep(
    model: AnyPotts,
    beta,
    method: str,
    u: Float[Array, "L n_chains n_uniforms"],
    states: Int[Array, "n_chains L"],
    *,
    chain_block: Optional[int] = None,
    num_warps: Optional[int] = None,
    unroll: int = 4,
    interpret: Optional[bool] = None,
) -> tuple[Int[Array, "n_chains L"], Int[Array, "n_chains 2"]]:
    r"""One sequential sweep of every chain in one Pallas kernel; the same updates and random
    numbers as `jaxpotts.sampling._sequential_sweep` (see the module docstring).

    Args:
        model: joint `PottsModel` or `FactoredPotts` (q >= 2).
        beta: inverse temperature (scalar, may be traced).
        method: "gibbs" or "metropolis".
        u: uniforms in (0, 1), (L, n_chains, 1 or 2), the XLA sweep's layout.
        states: colours (n_chains, L).
        chain_block, num_warps, unroll, interpret: launch settings (`config`).

    Returns:
        New states (n_chains, L) and per-chain counts (accepted, changed), (n_chains, 2).
    """
    if method not in ("gibbs", "metropolis"):
        raise ValueError(f"method must be 'gibbs' or 'metropolis', got {method!r}")
    n_chains, L = states.shape
    cfg = config(n_chains, chain_block, num_warps, unroll, interpret)
    ST, counts = sweep_kernel_layout(operands(model), model.q, beta, method, u, to_kernel_layout(states, cfg), cfg)
    return ST[:, :n_chains].T, counts


@partial(jax.jit, static_argnames=("q", "method", "factored", "cfg"))
def _call(beta, h, a, b, ST, u, *, q, method, factored, cfg: Config):
    L, n = ST.shape
    Q = h.shape[1]
    kernel = partial(_kernel, L=L, q=q, Q=Q, CB=cfg.chain_block, method=method, factored=factored,
                     unroll=cfg.unroll)
    return pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct((L, n), jnp.int32), jax.ShapeDtypeStruct((2, n), jnp.int32)),
        grid=(n // cfg.chain_block,),
        interpret=cfg.interpret,
        compiler_params=None if cfg.interpret else _triton_params(cfg.num_warps),
        name=f"jaxpotts_{'factored' if factored else 'dense'}_{method}_sweep",
    )(beta, h, a, b, ST, u)


def _triton_params(num_warps: int):
    from jax.experimental.pallas import triton as plt

    return plt.CompilerParams(num_warps=num_warps, num_stages=1)

r"""Fused sequential sweeps in Pallas (`jax.experimental.pallas`): one kernel launch per sweep.

The XLA sweeps of `jaxpotts.sampling` run each site update as a handful of small XLA kernels,
so on a GPU the sampler waits on launches. Here one `pallas_call` performs all L site updates
of a sweep. The grid runs over blocks of `chain_block` chains (default 1: one program per
chain, so even 1000 chains fill a large GPU). A program loads its chains' colours once, keeps
them in registers as a (chain_block, L') tensor (L' = L padded to a power of two), runs the
sites $k = 0..L-1$ in order, and writes the colours back once. Each site update reads all
neighbours at once, spread over the program's threads, instead of looping over them:

* dense Gibbs: $\phi_k(a) = h_k(a) + \sum_j J_{jk}(s_j, a)$: one (L', Q) gather of the rows
  $J_{jk}(s_j, \cdot)$ (contiguous, from couplings stored [k, j, b, a]) summed over j, then
  $s_k \sim \mathrm{softmax}(\beta\phi_k)$ by the inverse CDF (a cumulative sum);
* dense Metropolis: $\Delta = h_k(a') - h_k(s_k) + \sum_j [J_{jk}(s_j, a') - J_{jk}(s_j, s_k)]$,
  two (L',) gathers;
* factored Gibbs: $\phi_k(a) = h_k(a) + \sum_j J_{kj} U(a, s_j)$, a gather of rows of the small
  (Q, Q) table $U^\top$ weighted by the row $J_{k\cdot}$;
* factored Metropolis: $\Delta = h_k(a') - h_k(s_k) + \sum_j J_{kj} [U(a', s_j) - U(s_k, s_j)]$.

The factored kernels read $J$ (L, L') and $U$ (Q, Q) and never build the dense couplings. The
colour of site k is read from and written into the register tensor by masks (`where(pos == k)`),
which is how Triton updates registers at a runtime index.

Random numbers are the caller's: the same uniforms, with the same layout (L, n_chains,
n_uniforms), as the XLA sequential sweep, and the same update rules (`_inverse_cdf`,
`_proposal`, log(u) < beta Delta). The chains are therefore the XLA kernel's chains; only the
order of the floating-point sums over neighbours and colours differs (a tree reduction here, a
sequential one there), so the chains agree exactly unless a uniform falls within rounding of a
CDF step or acceptance threshold: never in the float64 tests, and not for the fixed float32
test inputs (tests/test_pallas_sampling.py).

GPU-friendly shapes (Triton needs power-of-two blocks): colours are padded to a power of two
$Q \ge 16$ (padded colours get logit $-\infty$ and are never proposed), sites to L' (padded
sites have zero couplings, read a zero row, and are never updated). On other backends the
kernel runs in Pallas interpret mode (for tests; slow). The kernel has no matrix products, so
no TF32 question arises (docs/accelerators.md); it has no atomics, so it is deterministic.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jaxtyping import Array, Float, Int

from .potts import AnyPotts, FactoredPotts

__all__ = [
    "pallas_sweep",
    "default_chain_block",
    "operands",
    "config",
    "Operands",
    "Config",
    "to_kernel_layout",
    "from_kernel_layout",
    "sweep_kernel_layout",
]


def _next_pow2(n: int, minimum: int = 1) -> int:
    return max(minimum, 1 << max(0, (int(n) - 1).bit_length()))


def default_chain_block(n_chains: int) -> int:
    """Chains per program: 1 (each program's site updates already spread an (L', Q) gather over
    its threads, and one program per chain gives 1000 programs for 1000 chains)."""
    return 1


def _interpret() -> bool:
    return jax.default_backend() != "gpu"


def _kernel(beta_ref, h_ref, a_ref, b_ref, S_in, u_ref, S_out, count_ref, *, L, q, Q, Lp, CB, method, factored):
    """One program: a sweep of sites 0..L-1 over its block of CB chains.

    Refs: beta (1,); h (L, Q); dense: a = coupling rows (L L q + 1, Q), row (k L + j) q + b
    holding J_jk(b, .) and the last row zero, b unused; factored: a = J (L, Lp), b = U^T (Q, Q);
    S_in/S_out (n, Lp); u (L, n, n_uniforms); count (2, n) (accepted, changed).
    """
    chains = pl.ds(pl.program_id(0) * CB, CB)
    beta = beta_ref[0]
    pos = jax.lax.broadcasted_iota(jnp.int32, (CB, Lp), 1)
    colours = jax.lax.broadcasted_iota(jnp.int32, (CB, Q), 1)
    zero_row = L * L * q

    def site(k, carry):
        state, accepted, changed = carry
        old = jnp.sum(jnp.where(pos == k, state, 0), axis=1).astype(jnp.int32)  # (CB,)
        if not factored:
            rows = jnp.where(pos < L, (k * L + pos) * q + state, zero_row)  # (CB, Lp)
        if method == "gibbs":
            if factored:  # sum_j J_kj U^T[s_j, .]
                inter = jnp.sum(a_ref[k, :][None, :, None] * b_ref[state, :], axis=1)
            else:  # sum_j J_jk(s_j, .)
                inter = jnp.sum(a_ref[rows, :], axis=1)
            phi = h_ref[k, :][None, :] + inter
            logits = jnp.where(colours < q, beta * phi, -jnp.inf)  # mask after scaling: beta = 0
            p = jnp.exp(logits - jnp.max(logits, axis=1, keepdims=True))
            cdf = jnp.cumsum(p, axis=1)
            total = jnp.sum(jnp.where(colours == Q - 1, cdf, 0.0), axis=1)  # cdf[:, -1] (padded p = 0)
            t = u_ref[k, chains, 0] * total
            new = jnp.sum((cdf < t[:, None]).astype(jnp.int32), axis=1).astype(jnp.int32)
            accepted = accepted + jnp.ones_like(accepted)
        else:
            u0 = u_ref[k, chains, 0]
            shift = jnp.minimum(jnp.floor(u0 * (q - 1)).astype(jnp.int32), q - 2)
            prop = (old + 1 + shift) % q
            kk = jnp.full((CB,), k, jnp.int32)
            dh = h_ref[kk, prop] - h_ref[kk, old]
            prop_b = jnp.broadcast_to(prop[:, None], (CB, Lp))
            old_b = jnp.broadcast_to(old[:, None], (CB, Lp))
            if factored:  # sum_j J_kj [U(a', s_j) - U(s_k, s_j)]
                diff = jnp.sum(a_ref[k, :][None, :] * (b_ref[state, prop_b] - b_ref[state, old_b]), axis=1)
            else:
                diff = jnp.sum(a_ref[rows, prop_b] - a_ref[rows, old_b], axis=1)
            accept = jnp.log(u_ref[k, chains, 1]) < beta * (dh + diff)
            new = jnp.where(accept, prop, old)
            accepted = accepted + accept.astype(jnp.int32)
        changed = changed + (new != old).astype(jnp.int32)
        return jnp.where(pos == k, new[:, None], state), accepted, changed

    zero = jnp.zeros((CB,), jnp.int32)
    state, accepted, changed = jax.lax.fori_loop(0, L, site, (S_in[chains, :], zero, zero))
    S_out[chains, :] = state
    count_ref[0, chains] = accepted
    count_ref[1, chains] = changed


class Operands(NamedTuple):
    """The model as the kernel reads it, padded once per run (not per sweep): h (L, Q); dense:
    a = coupling rows (L L q + 1, Q) [(k L + j) q + b] = J_jk(b, .) with a last zero row, b unused;
    factored: a = J (L, L'), b = U^T (Q, Q)."""

    h: Float[Array, "L Q"]
    a: Float[Array, "rows Q_or_Lp"]
    b: Float[Array, "Q Q"]


def operands(model: AnyPotts) -> Operands:
    """`Operands` of a joint model (q >= 2)."""
    L, q = model.L, model.q
    if q < 2:
        raise ValueError(f"the Pallas sweep needs q >= 2 colours, got q = {q}")
    Q, Lp = _next_pow2(q, 16), _next_pow2(L)
    dtype = model.fields.dtype
    h = jnp.pad(model.fields, ((0, 0), (0, Q - q)))
    if isinstance(model, FactoredPotts):
        J = jnp.pad(model.J.astype(dtype), ((0, 0), (0, Lp - L)))
        return Operands(h, J, jnp.pad(model.U.T.astype(dtype), ((0, Q - q), (0, Q - q))))
    rows = jnp.pad(jnp.swapaxes(model.couplings, 0, 1), ((0, 0), (0, 0), (0, 0), (0, Q - q))).reshape(L * L * q, Q)
    return Operands(h, jnp.concatenate([rows, jnp.zeros((1, Q), dtype)]), jnp.zeros((Q, Q), dtype))


class Config(NamedTuple):
    """Static launch settings: chains per program (a power of two), Triton warps per program,
    Pallas interpret mode."""

    chain_block: int
    num_warps: int
    interpret: bool


def config(
    n_chains: int, chain_block: int | None = None, num_warps: int | None = None, interpret: bool | None = None
) -> Config:
    """`Config` with defaults: `default_chain_block`, 4 warps, interpret mode unless the
    backend is a GPU."""
    if chain_block is None:
        chain_block = default_chain_block(n_chains)
    if (
        isinstance(chain_block, bool)
        or not isinstance(chain_block, int)
        or chain_block < 1
        or chain_block & (chain_block - 1)
    ):
        raise ValueError(f"chain_block must be a power of two, got {chain_block!r}")
    if num_warps is None:
        num_warps = 4
    if isinstance(num_warps, bool) or not isinstance(num_warps, int) or num_warps < 1 or num_warps & (num_warps - 1):
        raise ValueError(f"num_warps must be a power of two, got {num_warps!r}")
    return Config(chain_block, num_warps, _interpret() if interpret is None else bool(interpret))


def to_kernel_layout(states: Int[Array, "n_chains L"], cfg: Config) -> Int[Array, "n Lp"]:
    """States padded to L' sites (colour 0, never updated) and to whole chain blocks (dropped
    later), (n, L')."""
    n_chains, L = states.shape
    n = -(-n_chains // cfg.chain_block) * cfg.chain_block
    return jnp.pad(states.astype(jnp.int32), ((0, n - n_chains), (0, _next_pow2(L) - L)))


def from_kernel_layout(S: Int[Array, "n Lp"], n_chains: int, L: int) -> Int[Array, "n_chains L"]:
    return S[:n_chains, :L]


def sweep_kernel_layout(
    ops: Operands,
    q: int,
    beta,
    method: str,
    u: Float[Array, "L n_chains n_uniforms"],
    S: Int[Array, "n Lp"],
    cfg: Config,
) -> tuple[Int[Array, "n Lp"], Int[Array, "n_chains 2"]]:
    """One sweep on states in kernel layout; returns them and the per-chain counts of the real
    chains (the first n_chains = u.shape[1])."""
    n = S.shape[0]
    n_chains = u.shape[1]
    u = u.astype(ops.h.dtype)
    if n > n_chains:
        u = jnp.pad(u, ((0, 0), (0, n - n_chains), (0, 0)), constant_values=0.5)
    beta = jnp.reshape(jnp.asarray(beta, ops.h.dtype), (1,))
    S, counts = _call(beta, *ops, S, u, q=q, method=method, factored=ops.a.shape[0] == ops.h.shape[0], cfg=cfg)
    return S, counts[:, :n_chains].T


def pallas_sweep(
    model: AnyPotts,
    beta,
    method: str,
    u: Float[Array, "L n_chains n_uniforms"],
    states: Int[Array, "n_chains L"],
    *,
    chain_block: int | None = None,
    num_warps: int | None = None,
    interpret: bool | None = None,
) -> tuple[Int[Array, "n_chains L"], Int[Array, "n_chains 2"]]:
    r"""One sequential sweep of every chain in one Pallas kernel; the same updates and random
    numbers as `jaxpotts.sampling._sequential_sweep` (see the module docstring).

    Args:
        model: joint `PottsModel` or `FactoredPotts` (q >= 2).
        beta: inverse temperature (scalar, may be traced).
        method: "gibbs" or "metropolis".
        u: uniforms in (0, 1), (L, n_chains, 1 or 2), the XLA sweep's layout.
        states: colours (n_chains, L).
        chain_block, num_warps, interpret: launch settings (`config`).

    Returns:
        New states (n_chains, L) and per-chain counts (accepted, changed), (n_chains, 2).
    """
    if method not in ("gibbs", "metropolis"):
        raise ValueError(f"method must be 'gibbs' or 'metropolis', got {method!r}")
    n_chains, L = states.shape
    if u.shape[:2] != (L, n_chains) or u.shape[2] < (1 if method == "gibbs" else 2):
        raise ValueError(
            f"u must have shape (L, n_chains, n_uniforms) = ({L}, {n_chains}, "
            f"{1 if method == 'gibbs' else 2}), got {tuple(u.shape)}"
        )
    cfg = config(n_chains, chain_block, num_warps, interpret)
    S, counts = sweep_kernel_layout(operands(model), model.q, beta, method, u, to_kernel_layout(states, cfg), cfg)
    return from_kernel_layout(S, n_chains, L), counts


@partial(jax.jit, static_argnames=("q", "method", "factored", "cfg"))
def _call(beta, h, a, b, S, u, *, q, method, factored, cfg: Config):
    n, Lp = S.shape
    L, Q = h.shape
    kernel = partial(_kernel, L=L, q=q, Q=Q, Lp=Lp, CB=cfg.chain_block, method=method, factored=factored)
    return pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct((n, Lp), jnp.int32), jax.ShapeDtypeStruct((2, n), jnp.int32)),
        grid=(n // cfg.chain_block,),
        interpret=cfg.interpret,
        compiler_params=None if cfg.interpret else _triton_params(cfg.num_warps),
        name=f"jaxpotts_{'factored' if factored else 'dense'}_{method}_sweep",
    )(beta, h, a, b, S, u)


def _triton_params(num_warps: int):
    from jax.experimental.pallas import triton as plt

    return plt.CompilerParams(num_warps=num_warps, num_stages=1)

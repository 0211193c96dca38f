r"""Self-attention layers that predict masked tokens: factored attention and a Transformer baseline.

**Factored attention** (docs/theory.md section 2, "Factored attention and the attention-Potts
mapping") separates positions from tokens: attention weights depend only on positions, values
only on tokens. For head $h = 1..H$,

$$A^h_{ij} = \mathrm{softmax}_{j \ne i}\!\Big(\frac{\langle Q^h_i, K^h_j\rangle}{\sqrt d}\Big), \qquad
\ell_i(a) = \sum_h \sum_{j \ne i} A^h_{ij}\, V^h(a, s_j) \;(+\, f_i(a)),$$

with positional queries/keys $Q^h, K^h \in \mathbb R^{L\times d}$, value matrices
$V^h \in \mathbb R^{q\times q}$ acting on one-hot tokens and optional fields $f \in \mathbb R^{L\times q}$.
The diagonal $A^h_{ii}$ is masked, so $\ell_i$ never looks at $s_i$: one call gives the logits of
all $L$ masked-token predictions at once. These are exactly the conditionals of the Potts model
with couplings $J_{ij}(a,b) = \sum_h A^h_{ij} V^h(a,b)$ (`FactoredAttention.to_potts`). With
`softmax=False` the attention of each head is a free $L\times L$ matrix with zero diagonal: one
head is then exactly the generalized Potts parametrisation $J_{ij}\,U(a,b)$.

**Transformer** is the standard baseline: token + learned positional embeddings, pre-LN blocks
of multi-head softmax self-attention (queries and keys depend on the tokens) and an MLP. To
predict site i the token $s_i$ is replaced by a [MASK] token (index q) and the output at i is
read out; `__call__` does this for every site by vmapping over the masked position.

Both expose `.L`, `.q`, `__call__(s[L]) -> logits[L, q]` and `site_logits(s, i) -> logits[q]`,
which is all `jaxpotts.losses` needs.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from ._precision import einsum, matmul
from ._validation import check_sequences
from .potts import FactoredPotts, PottsModel, symmetrize_couplings

__all__ = ["FactoredAttention", "Transformer", "TransformerBlocks"]


def _check_size(n, name: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _check_one_sequence(model, s) -> Int[Array, " L"]:
    """One token sequence (L,) with colours in 0..q-1 (value check skipped for tracers)."""
    s = check_sequences(s, model.L, model.q, "s")
    if s.ndim != 1:
        raise ValueError(
            f"s must be one sequence of shape (L,) = ({model.L},), got shape {tuple(s.shape)}; "
            "use jax.vmap (or jaxpotts.losses) for batches"
        )
    return s


def _check_site(i, L: int):
    if isinstance(i, (int, np.integer)) and not isinstance(i, bool):
        if not 0 <= i < L:
            raise ValueError(f"site must be in 0..{L - 1}, got {i}")
    return jnp.asarray(i, jnp.int32)


def _off_diagonal(L: int) -> jax.Array:
    return ~jnp.eye(L, dtype=bool)


# ----------------------------------------------------------------------------- factored attention


def _float_array(value, name: str) -> jax.Array:
    """A finite floating array (finiteness checked for concrete values only)."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if not isinstance(arr, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _check_factored_shapes(values, queries, keys, weights, fields, softmax: bool) -> None:
    """Shape and dtype invariants of a `FactoredAttention` (see its `__check_init__`)."""
    for name, arr in dict(values=values, queries=queries, keys=keys, weights=weights, fields=fields).items():
        if arr is not None and not jnp.issubdtype(jnp.result_type(arr), jnp.floating):
            raise TypeError(f"{name} must be a floating-point array, got dtype {jnp.result_type(arr)}")
    shape = tuple(np.shape(values))
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] < 2:
        raise ValueError(f"values must have shape (H, q, q) with q >= 2, got {shape}")
    H, q = shape[0], shape[1]
    if softmax:
        if queries is None or keys is None or weights is not None:
            raise ValueError("softmax attention needs queries and keys (H, L, d) and no free weights")
        qs, ks = tuple(np.shape(queries)), tuple(np.shape(keys))
        if len(qs) != 3 or qs[0] != H or qs != ks or qs[1] < 2:
            raise ValueError(
                f"queries and keys must both have shape (H, L, d) = ({H}, L, d) with L >= 2, got {qs} and {ks}"
            )
        L = qs[1]
    else:
        if weights is None or queries is not None or keys is not None:
            raise ValueError("free attention needs weights (H, L, L) and no queries or keys")
        ws = tuple(np.shape(weights))
        if len(ws) != 3 or ws[0] != H or ws[1] != ws[2] or ws[1] < 2:
            raise ValueError(f"weights must have shape (H, L, L) = ({H}, L, L) with L >= 2, got {ws}")
        L = ws[1]
    if fields is not None and tuple(np.shape(fields)) != (L, q):
        raise ValueError(f"fields must have shape (L, q) = ({L}, {q}), got {tuple(np.shape(fields))}")


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _init_factored(key, L, q, H, d, softmax, fields, dtype, init_scale):
    """Initial (queries, keys, weights, values, fields); jitted, and drawn as one flat normal
    vector (one random-bits kernel to compile instead of three)."""
    shapes = [(H, L, d), (H, L, d)] if softmax else [(H, L, L)]
    shapes.append((H, q, q))
    sizes = [math.prod(shape) for shape in shapes]
    z = jax.random.normal(key, (sum(sizes),), dtype)
    parts = [x.reshape(shape) for x, shape in zip(jnp.split(z, np.cumsum(sizes)[:-1]), shapes, strict=False)]
    if softmax:
        queries, keys, weights = parts[0], parts[1], None
    else:
        weights = jnp.where(_off_diagonal(L), init_scale * parts[0] / math.sqrt(L), 0.0).astype(dtype)
        queries = keys = None
    values = init_scale * parts[-1] / math.sqrt(q)
    return queries, keys, weights, values, (jnp.zeros((L, q), dtype) if fields else None)


class FactoredAttention(eqx.Module):
    r"""One layer of factored self-attention with H heads (positional attention, token values).

    Args:
        L: sequence length (number of positions).
        q: number of colours (token alphabet size).
        n_heads: number of heads H.
        head_dim: query/key dimension d (unused when `softmax=False`).
        key: PRNG key for the initialisation.
        softmax: True: $A^h = \mathrm{softmax}_{j\ne i}(Q^h K^{h\top}/\sqrt d)$ row-wise over $j \ne i$.
            False: $A^h$ is a free $L \times L$ matrix whose diagonal is masked to zero in the
            forward pass (so gradients never move it).
        fields: include per-site fields $f_i(a)$ (initialised to zero).
        init_scale: scale $c$ of the initial values and free attention (below).
        dtype: parameter dtype (default: the default float dtype, float64 under x64).

    Initialisation: $Q, K \sim \mathcal N(0, 1)$, free $A \sim c\,\mathcal N(0, 1/L)$ (zero
    diagonal), $V \sim c\,\mathcal N(0, 1/q)$ with $c$ = `init_scale` = 0.1: small initial
    couplings $A V$. The product parametrisation is not convex, and with $c = 1$ Adam was seen
    to stall on plateaus far from the optimum (train loss 15% above the truth's on
    well-mixed generalized-Potts data) from some initialisations, which a small start avoids. The logits cost $O(H L^2 q + H L q)$ per sequence as
    one contraction with the gathered values $V^h(\cdot, s_j)$; the $(L, L, q, q)$ coupling
    tensor is never built (except by `to_potts`).

    Attributes:
        queries, keys: $Q^h, K^h$, shape (H, L, d); None when `softmax=False`.
        weights: free attention $A^h$, shape (H, L, L); None when `softmax=True`.
        values: $V^h$, shape (H, q, q).
        fields: $f$, shape (L, q), or None.
    """

    queries: Float[Array, "H L d"] | None
    keys: Float[Array, "H L d"] | None
    weights: Float[Array, "H L L"] | None
    values: Float[Array, "H q q"]
    fields: Float[Array, "L q"] | None
    softmax: bool = eqx.field(static=True)

    def __init__(
        self,
        L: int,
        q: int,
        n_heads: int,
        head_dim: int,
        *,
        key: PRNGKeyArray,
        softmax: bool = True,
        fields: bool = False,
        init_scale: float = 0.1,
        dtype=None,
    ):
        L = _check_size(L, "L", 2)
        q = _check_size(q, "q", 2)
        H = _check_size(n_heads, "n_heads", 1)
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale!r}")
        d = _check_size(head_dim, "head_dim", 1)
        dtype = jnp.result_type(float) if dtype is None else dtype
        self.softmax = bool(softmax)
        self.queries, self.keys, self.weights, self.values, self.fields = _init_factored(
            key, L, q, H, d, self.softmax, bool(fields), jnp.dtype(dtype), float(init_scale)
        )

    def __check_init__(self):
        """Invariants of every layer, checked by equinox after `__init__` and by `from_arrays`:
        consistent shapes (values (H, q, q); queries and keys (H, L, d) with softmax attention,
        weights (H, L, L) with free attention; fields (L, q)), L >= 2, q >= 2, floating dtypes."""
        _check_factored_shapes(self.values, self.queries, self.keys, self.weights, self.fields, self.softmax)

    @classmethod
    def from_arrays(
        cls,
        values: Float[Array, "H q q"],
        *,
        queries: Float[Array, "H L d"] | None = None,
        keys: Float[Array, "H L d"] | None = None,
        weights: Float[Array, "H L L"] | None = None,
        fields: Float[Array, "L q"] | None = None,
    ) -> FactoredAttention:
        """A layer with given parameters: `queries` and `keys` (softmax attention) or `weights`
        (free attention, its diagonal is set to zero).

        The layer goes through the same validation as one built by the constructor (its
        `__check_init__`: shapes, sizes, floating dtypes), and concrete arrays must be finite.

        Raises:
            ValueError naming the array: wrong shape, inconsistent sizes, neither or both of
            (queries, keys) and weights, NaN or inf entries. TypeError for a non-floating array.
        """
        if (weights is None) == (queries is None or keys is None) or (
            weights is not None and (queries is not None or keys is not None)
        ):
            raise ValueError("give either queries and keys (softmax attention) or weights (free attention)")
        arrays = {}
        for name, value in dict(values=values, queries=queries, keys=keys, weights=weights, fields=fields).items():
            arrays[name] = None if value is None else _float_array(value, name)
        _check_factored_shapes(softmax=weights is None, **arrays)
        if arrays["weights"] is not None:
            arrays["weights"] = jnp.where(_off_diagonal(arrays["weights"].shape[1]), arrays["weights"], 0.0)
        # Equinox's constructor is the one that draws random parameters; an instance with
        # given arrays is assembled here and then validated exactly as the constructor's is.
        self = object.__new__(cls)
        for name, value in dict(arrays, softmax=weights is None).items():
            object.__setattr__(self, name, value)
        self.__check_init__()
        return self

    @classmethod
    def from_factored(cls, model: FactoredPotts) -> FactoredAttention:
        r"""The one-head free-attention layer with $A = J$, $V = U$ and fields $h$: its logits are
        the conditionals of the generalized Potts model `model`."""
        if not isinstance(model, FactoredPotts):
            raise TypeError(f"expected a FactoredPotts, got {type(model).__name__}")
        return cls.from_arrays(model.U[None], weights=model.J[None], fields=model.fields)

    # -- sizes

    @property
    def L(self) -> int:
        return (self.weights if self.queries is None else self.queries).shape[-2]

    @property
    def q(self) -> int:
        return self.values.shape[-1]

    @property
    def n_heads(self) -> int:
        return self.values.shape[0]

    @property
    def head_dim(self) -> int | None:
        return None if self.queries is None else self.queries.shape[-1]

    # -- attention

    def _scores(self, rows: jax.Array | None = None) -> Float[Array, "H n L"]:
        Q = self.queries if rows is None else self.queries[:, rows]
        return einsum("hid,hjd->hij", Q, self.keys) / math.sqrt(self.queries.shape[-1])

    def attention(self) -> Float[Array, "H L L"]:
        r"""Attention matrices $A^h_{ij}$, shape (H, L, L), with exactly zero diagonal.

        Softmax: $A^h_{ij} = e^{\langle Q_i, K_j\rangle/\sqrt d} / \sum_{k \ne i} e^{\langle Q_i, K_k\rangle/\sqrt d}$
        for $j \ne i$ (each row sums to one). Free: the stored matrix with its diagonal masked.
        """
        return _factored_attention(self)

    def _attention_row(self, i: Int[Array, ""]) -> Float[Array, "H L"]:
        """Row i of every head's attention, $A^h_{i\\cdot}$, in $O(H L d)$."""
        not_i = jnp.arange(self.L) != i
        if not self.softmax:
            return jnp.where(not_i, self.weights[:, i], 0.0)
        scores = jnp.where(not_i, self._scores(i[None])[:, 0], -jnp.inf)
        return jnp.where(not_i, jax.nn.softmax(scores, axis=-1), 0.0)

    # -- logits

    def __call__(self, s: Int[Array, " L"]) -> Float[Array, "L q"]:
        r"""Logits $\ell_i(a) = \sum_h \sum_{j\ne i} A^h_{ij} V^h(a, s_j) + f_i(a)$ of all L masked sites.

        Row i does not depend on $s_i$; `log_softmax` of row i is $\log p(s_i = a \mid s_{-i})$.
        """
        return _factored_logits(self, _check_one_sequence(self, s))

    def site_logits(self, s: Int[Array, " L"], i: Int[Array, ""]) -> Float[Array, " q"]:
        """Logits of the single masked site i, $O(H L (d + q))$ (used by the stochastic MLM loss)."""
        return _factored_site_logits(self, _check_one_sequence(self, s), _check_site(i, self.L))

    # -- the equivalent Potts model

    def couplings(self) -> Float[Array, "L L q q"]:
        r"""Dense couplings $J_{ij}(a,b) = \sum_h A^h_{ij} V^h(a,b)$ (zero diagonal blocks)."""
        return _factored_couplings(self)

    def to_potts(self, symmetrize: bool = False) -> PottsModel:
        r"""The Potts model whose conditionals are this layer's predictions.

        `symmetrize=False`: couplings exactly $J_{ij}(a,b) = \sum_h A^h_{ij} V^h(a,b)$ and fields
        $f$ (zeros without fields) — in general not symmetric, i.e. L conditionals, with
        `conditional_logits(to_potts(), s) == self(s)`. `symmetrize=True`: the joint model
        $\tfrac12 [J_{ij}(a,b) + J_{ji}(b,a)]$, usable for energies and sampling.
        """
        C = self.couplings()
        if symmetrize:
            C = symmetrize_couplings(C)
        h = jnp.zeros((self.L, self.q), C.dtype) if self.fields is None else self.fields
        return PottsModel(h, C)

    def to_factored(self) -> FactoredPotts:
        r"""For one head: the generalized Potts model $J_{ij} U(a,b)$ with $J = A$, $U = V$
        (not symmetric in general; `to_potts` gives the same couplings densely)."""
        if self.n_heads != 1:
            raise ValueError(f"to_factored needs n_heads == 1 (got {self.n_heads}); use to_potts()")
        h = jnp.zeros((self.L, self.q), self.values.dtype) if self.fields is None else self.fields
        return FactoredPotts(h, self.attention()[0], self.values[0])

    # -- regularisation (see jaxpotts.losses.l2_penalty)

    def coupling_norm2(self) -> Scalar:
        r"""$\sum_{i \ne j} \|J_{ij}\|_F^2$ of the implied couplings, without building them:
        $\sum_{h,h'} \langle A^h, A^{h'}\rangle\,\langle V^h, V^{h'}\rangle$."""
        A = self.attention()
        return jnp.sum(einsum("hij,gij->hg", A, A) * einsum("hab,gab->hg", self.values, self.values))

    def field_norm2(self) -> Scalar:
        r"""$\sum_i \|f_i\|^2$ (zero without fields)."""
        return jnp.zeros((), self.values.dtype) if self.fields is None else jnp.sum(self.fields**2)


# Jitted numerical cores (checks run before, on concrete inputs): eager calls compile once per
# layer structure and shape instead of op by op; inside an outer jit they inline.


@eqx.filter_jit
def _factored_attention(fa: FactoredAttention) -> Float[Array, "H L L"]:
    mask = _off_diagonal(fa.L)
    if not fa.softmax:
        return jnp.where(mask, fa.weights, 0.0)
    scores = jnp.where(mask, fa._scores(), -jnp.inf)
    return jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)


@eqx.filter_jit
def _factored_logits(fa: FactoredAttention, s: Int[Array, " L"]) -> Float[Array, "L q"]:
    gathered = fa.values[:, :, s]  # V^h(a, s_j): (H, q, L)
    logits = einsum("hij,haj->ia", fa.attention(), gathered)
    return logits if fa.fields is None else logits + fa.fields


@eqx.filter_jit
def _factored_site_logits(fa: FactoredAttention, s: Int[Array, " L"], i: Int[Array, ""]) -> Float[Array, " q"]:
    logits = einsum("hj,haj->a", fa._attention_row(i), fa.values[:, :, s])
    return logits if fa.fields is None else logits + fa.fields[i]


@eqx.filter_jit
def _factored_couplings(fa: FactoredAttention) -> Float[Array, "L L q q"]:
    return einsum("hij,hab->ijab", fa.attention(), fa.values)


# ----------------------------------------------------------------------------- transformer


def _layer_norm(x: Float[Array, "... D"], scale: Float[Array, " D"], bias: Float[Array, " D"], eps: float = 1e-5):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.var(x, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


class TransformerBlocks(eqx.Module):
    r"""Parameters of `n_layers` pre-LN encoder blocks, stacked along a leading layer axis (one
    array per kind of parameter, whatever the depth). Block $\ell$ maps $x \in \mathbb R^{L\times D}$ to

    $$x \leftarrow x + \mathrm{MHA}(\mathrm{LN}_1(x)), \qquad
    x \leftarrow x + W_2\,\mathrm{gelu}(W_1\,\mathrm{LN}_2(x) + b_1) + b_2,$$

    with multi-head softmax attention $\mathrm{softmax}_j(\langle q_i, k_j\rangle/\sqrt{D/H})$ over
    all positions, queries, keys and values being linear maps of the token representations.
    """

    ln1_scale: Float[Array, "n D"]
    ln1_bias: Float[Array, "n D"]
    w_qkv: Float[Array, "n D D3"]
    b_qkv: Float[Array, "n D3"]
    w_out: Float[Array, "n D D"]
    b_out: Float[Array, "n D"]
    ln2_scale: Float[Array, "n D"]
    ln2_bias: Float[Array, "n D"]
    w_mlp1: Float[Array, "n D F"]
    b_mlp1: Float[Array, "n F"]
    w_mlp2: Float[Array, "n F D"]
    b_mlp2: Float[Array, "n D"]


def _block(x: Float[Array, "L D"], p: TransformerBlocks, n_heads: int) -> Float[Array, "L D"]:
    """One block (p holds one layer's slice of `TransformerBlocks`)."""
    n, D = x.shape
    dh = D // n_heads
    h = _layer_norm(x, p.ln1_scale, p.ln1_bias)
    qkv = (matmul(h, p.w_qkv) + p.b_qkv).reshape(n, 3, n_heads, dh)
    q_, k_, v_ = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    att = jax.nn.softmax(einsum("ihd,jhd->hij", q_, k_) / math.sqrt(dh), axis=-1)
    x = x + matmul(einsum("hij,jhd->ihd", att, v_).reshape(n, D), p.w_out) + p.b_out
    h = _layer_norm(x, p.ln2_scale, p.ln2_bias)
    return x + matmul(jax.nn.gelu(matmul(h, p.w_mlp1) + p.b_mlp1), p.w_mlp2) + p.b_mlp2


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _init_transformer(key, L, q, n_layers, d_model, n_heads, d_mlp, dtype):
    """Initial parameters from one flat normal draw: embeddings N(0, 1), weight matrices
    N(0, 1/fan_in), biases 0, layer-norm scales 1."""
    n, D, F = n_layers, d_model, d_mlp
    shapes = {
        "token_embedding": ((q + 1, D), 1.0),
        "position_embedding": ((L, D), 1.0),
        "w_qkv": ((n, D, 3 * D), D**-0.5),
        "w_out": ((n, D, D), D**-0.5),
        "w_mlp1": ((n, D, F), D**-0.5),
        "w_mlp2": ((n, F, D), F**-0.5),
        "w_readout": ((D, q), D**-0.5),
    }
    sizes = [math.prod(shape) for shape, _ in shapes.values()]
    z = jax.random.normal(key, (sum(sizes),), dtype)
    arrays = {
        name: (x.reshape(shape) * scale).astype(dtype)
        for (name, (shape, scale)), x in zip(shapes.items(), jnp.split(z, np.cumsum(sizes)[:-1]), strict=False)
    }
    ones, zeros = (lambda *shape: jnp.ones(shape, dtype)), (lambda *shape: jnp.zeros(shape, dtype))
    blocks = TransformerBlocks(
        ln1_scale=ones(n, D),
        ln1_bias=zeros(n, D),
        w_qkv=arrays["w_qkv"],
        b_qkv=zeros(n, 3 * D),
        w_out=arrays["w_out"],
        b_out=zeros(n, D),
        ln2_scale=ones(n, D),
        ln2_bias=zeros(n, D),
        w_mlp1=arrays["w_mlp1"],
        b_mlp1=zeros(n, F),
        w_mlp2=arrays["w_mlp2"],
        b_mlp2=zeros(n, D),
    )
    return (
        arrays["token_embedding"],
        arrays["position_embedding"],
        blocks,
        ones(D),
        zeros(D),
        arrays["w_readout"],
        zeros(q),
    )


class Transformer(eqx.Module):
    r"""Standard Transformer encoder trained by masked-token prediction (the baseline).

    Tokens $0..q-1$ plus a [MASK] token (index q) are embedded, a learned positional embedding
    is added, `n_layers` pre-LN blocks (multi-head softmax self-attention whose queries and keys
    depend on the tokens, then a GELU MLP of width `d_mlp`; see `TransformerBlocks`) are applied,
    then a final layer norm and a linear read-out give q logits per position.

    The prediction for site i replaces $s_i$ by [MASK] and reads the output at i, so it is a
    model of $p(s_i \mid s_{-i})$; `__call__` vmaps this over the L masked positions
    ($L$ forward passes, $O(L \cdot n_\text{layers} (L^2 D + L D\,d_\text{mlp}))$ per sequence).

    Args:
        L, q: sequence length and number of colours.
        n_layers: number of blocks.
        key: PRNG key for the initialisation.
        d_model: embedding width D; n_heads: attention heads per block (must divide D).
        d_mlp: MLP hidden width (default 4 D).
        dtype: parameter dtype (default: the default float dtype).
    """

    token_embedding: Float[Array, "q1 D"]
    position_embedding: Float[Array, "L D"]
    blocks: TransformerBlocks
    final_scale: Float[Array, " D"]
    final_bias: Float[Array, " D"]
    w_readout: Float[Array, "D q"]
    b_readout: Float[Array, " q"]
    n_heads: int = eqx.field(static=True)

    def __init__(
        self,
        L: int,
        q: int,
        n_layers: int = 1,
        *,
        key: PRNGKeyArray,
        d_model: int = 32,
        n_heads: int = 4,
        d_mlp: int | None = None,
        dtype=None,
    ):
        L = _check_size(L, "L", 2)
        q = _check_size(q, "q", 2)
        n_layers = _check_size(n_layers, "n_layers", 1)
        d_model = _check_size(d_model, "d_model", 1)
        n_heads = _check_size(n_heads, "n_heads", 1)
        if d_model % n_heads:
            raise ValueError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
        d_mlp = 4 * d_model if d_mlp is None else _check_size(d_mlp, "d_mlp", 1)
        dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
        (
            self.token_embedding,
            self.position_embedding,
            self.blocks,
            self.final_scale,
            self.final_bias,
            self.w_readout,
            self.b_readout,
        ) = _init_transformer(key, L, q, n_layers, d_model, n_heads, d_mlp, dtype)
        self.n_heads = n_heads

    @property
    def L(self) -> int:
        return self.position_embedding.shape[0]

    @property
    def q(self) -> int:
        return self.token_embedding.shape[0] - 1

    @property
    def n_layers(self) -> int:
        return self.blocks.w_qkv.shape[0]

    @property
    def d_model(self) -> int:
        return self.position_embedding.shape[1]

    @property
    def d_mlp(self) -> int:
        return self.blocks.w_mlp1.shape[-1]

    def encode(self, tokens: Int[Array, " L"]) -> Float[Array, "L D"]:
        """Final (layer-normed) hidden states for tokens in 0..q (q = [MASK])."""
        x = self.token_embedding[tokens] + self.position_embedding
        for layer in range(self.n_layers):  # unrolled: compiles faster than a scan at these depths
            x = _block(x, jax.tree_util.tree_map(lambda a, layer=layer: a[layer], self.blocks), self.n_heads)
        return _layer_norm(x, self.final_scale, self.final_bias)

    def readout(self, h: Float[Array, " D"]) -> Float[Array, " q"]:
        """Logits from a final hidden state."""
        return matmul(h, self.w_readout) + self.b_readout

    def _masked_site_logits(self, s: Int[Array, " L"], i: Int[Array, ""]) -> Float[Array, " q"]:
        return self.readout(self.encode(s.at[i].set(self.q))[i])

    def site_logits(self, s: Int[Array, " L"], i: Int[Array, ""]) -> Float[Array, " q"]:
        """Logits for site i with $s_i$ replaced by [MASK] (one forward pass)."""
        return _transformer_site_logits(self, _check_one_sequence(self, s), _check_site(i, self.L))

    def __call__(self, s: Int[Array, " L"]) -> Float[Array, "L q"]:
        """Logits of every site, each masked in turn (L forward passes, vmapped)."""
        return _transformer_logits(self, _check_one_sequence(self, s))

    def coupling_norm2(self) -> Scalar:
        r"""The Transformer has no coupling tensor: its L2 penalty is weight decay,
        $\sum W^2$ over the weight matrices and embeddings (not biases or layer-norm parameters)."""
        mats = [
            self.token_embedding,
            self.position_embedding,
            self.blocks.w_qkv,
            self.blocks.w_out,
            self.blocks.w_mlp1,
            self.blocks.w_mlp2,
            self.w_readout,
        ]
        return sum(jnp.sum(x**2) for x in mats)

    def field_norm2(self) -> Scalar:
        """No per-site fields: zero."""
        return jnp.zeros((), self.token_embedding.dtype)


@eqx.filter_jit
def _transformer_site_logits(tr: Transformer, s, i):
    return tr._masked_site_logits(s, i)


@eqx.filter_jit
def _transformer_logits(tr: Transformer, s):
    return jax.vmap(tr._masked_site_logits, in_axes=(None, 0))(s, jnp.arange(tr.L))

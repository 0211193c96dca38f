r"""Losses: negative log pseudo-likelihood and masked-language-modelling (MLM) loss.

For a model whose conditionals are $p_\theta(s_i = a \mid s_{-i}) = \mathrm{softmax}_a(\ell_i(a))$
and data $s^{(1..M)}$ with weights $w_m \ge 0$ ($\bar w$-normalised weighted mean):

$$\mathrm{PL}(\theta) = \frac{\sum_m w_m \sum_{i=1}^L -\log p_\theta(s^m_i \mid s^m_{-i})}{\sum_m w_m},
\qquad \mathrm{MLM}(\theta) = \mathrm{PL}(\theta) / L .$$

The MLM loss masks every site in turn and averages over sites; the pseudo-likelihood sums over
sites. For a factored attention layer the identity $L\cdot\mathrm{MLM}(fa) =
\mathrm{PL}(fa.\mathrm{to\_potts}())$ is algebraic (docs/mlm_equals_pl.md).

The *stochastic* MLM loss masks one uniformly random site $i_m$ per sequence (the way
Transformers are trained); since $\mathbb E_{i_m}[-\log p(s^m_{i_m}\mid s^m_{-i_m})] =
\frac1L\sum_i -\log p(s^m_i \mid s^m_{-i})$ it is an unbiased estimate of the MLM loss.

**Gaps as missing data** (``gaps="missing"``; plmc's ``-g``, used by EVmutation): with the
gap colour $g$ (colour 0, the gap of every alphabet of `jaxpotts.msa`), the gap is no state of
the model. Only non-gap sites contribute, their conditionals run over the q - 1 non-gap colours
and gapped neighbours add no coupling:

$$\mathrm{PL}_g(\theta) = \frac{1}{\sum_m w_m}\sum_m w_m \sum_{i:\, s^m_i \ne g}
-\log \frac{e^{\phi^m_i(s^m_i)}}{\sum_{a \ne g} e^{\phi^m_i(a)}}, \qquad
\phi^m_i(a) = h_i(a) + \sum_{j \ne i:\, s^m_j \ne g} J_{ij}(a, s^m_j).$$

It does not depend on $h_i(g)$, $J_{ij}(g,\cdot)$, $J_{ij}(\cdot,g)$ (their gradient is zero;
a fit started with them at zero keeps them there, and then the penalty below is plmc's over the
q - 1 states). It needs a model with Potts couplings (it is evaluated through the dense kernel
`jaxpotts._dense_pl`). ``gaps="state"`` (the default) is the plain PL above, the gap a q-th state.

**Regularisation convention** (the one place it is defined; docs/conventions.md): the
penalised objective is

$$F(\theta) = \mathrm{PL}(\theta) + \frac{\lambda_J}{2}\sum_{i \ne j}\sum_{a,b} J_{ij}(a,b)^2
+ \lambda_h \sum_i \sum_a h_i(a)^2 ,$$

with PL the weighted *mean* over sequences (normalised by $\sum_m w_m = N_\text{eff}$) and the
coupling sum over ordered pairs, so that for symmetric couplings the penalty is
$\lambda_J\sum_{i<j}\|J_{ij}\|_F^2$. `l2_penalty` computes the two penalty terms. With this
convention $\lambda_J$ and $\lambda_h$ are *exactly* plmDCA's `lambda_J`, `lambda_h` (symmetric and
asymmetric variants; default 0.01). Other tools: PlmDCA.jl (asymmetric) `lambdaJ` $= \lambda_J/2$;
CCMpred `lambda_pair` $= \lambda_J N_\text{eff}$ (its default $0.2\,(L-1)$) and `lambda_single`
$= \lambda_h N_\text{eff}$; plmc `-le` $= \lambda_J N_\text{eff}$, `-lh` $= \lambda_h N_\text{eff}$. The
training loop minimises $F/L$ (the same minimiser, in per-site MLM units).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Scalar

from . import _dense_pl
from ._precision import einsum, matmul
from ._validation import check_sequences, concrete
from .potts import FactoredPotts, PottsModel, local_fields
from .sharding import sum_over_rows

__all__ = [
    "all_conditional_logits",
    "site_logits",
    "site_negative_log_likelihood",
    "sequence_pseudo_likelihoods",
    "masked_site_nll",
    "pseudo_likelihood",
    "weighted_pseudo_likelihood_sum",
    "mlm_loss",
    "stochastic_mlm_loss",
    "coupling_norm2",
    "field_norm2",
    "l2_penalty",
    "l2_rule",
    "weighted_mean",
    "check_weights",
    "GAPS",
    "gap_colour",
]

#: How gaps enter the pseudo-likelihood: "state" (a colour like any other) or "missing" (missing
#: data, plmc's ``-g``; module docstring).
GAPS = ("state", "missing")


def check_weights(weights: Any, M: int) -> jax.Array | None:
    """Validate sequence weights: length M, finite, non-negative, positive total."""
    if weights is None:
        return None
    w = jnp.asarray(weights)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.result_type(float))
    if w.shape != (M,):
        raise ValueError(f"weights must have shape (M,) = ({M},) to match the sequences, got {tuple(w.shape)}")
    value = concrete(w)
    if value is not None:
        import numpy as np

        if not np.all(np.isfinite(value)):
            raise ValueError("weights contain non-finite values (NaN or inf)")
        if np.any(value < 0):
            raise ValueError(f"weights must be non-negative, found minimum {float(value.min()):g}")
        if not value.sum() > 0:
            raise ValueError("weights sum to zero: at least one sequence needs a positive weight")
    return w


def gap_colour(gaps: str) -> int | None:
    """The colour treated as missing data: None for ``gaps="state"``, 0 (the gap colour of the
    alphabets of `jaxpotts.msa`) for ``gaps="missing"``."""
    if gaps not in GAPS:
        raise ValueError(f"gaps must be one of {GAPS}, got {gaps!r}")
    return 0 if gaps == "missing" else None


def weighted_mean(values: Float[Array, " M"], weights: Float[Array, " M"] | None) -> Scalar:
    r"""$\sum_m w_m v_m / \sum_m w_m$ (plain mean when weights is None)."""
    if weights is None:
        return jnp.mean(values)
    weights = weights.astype(values.dtype)
    return jnp.sum(weights * values) / jnp.sum(weights)


def all_conditional_logits(model: Any, s: Int[Array, " L"]) -> Float[Array, "L q"]:
    """Logits of the L conditionals for one sequence: Potts models use their local fields,
    any other model (an attention layer) is called as `model(s)`."""
    if isinstance(model, (PottsModel, FactoredPotts)):
        return local_fields(model, s)
    return model(s)


def _model_size(model: Any) -> tuple[int, int]:
    try:
        return int(model.L), int(model.q)
    except AttributeError as err:
        raise TypeError(f"model {type(model).__name__} must expose its sizes as .L and .q") from err


def _prepare(model: Any, seqs: Any, weights: Any) -> tuple[jax.Array, jax.Array | None]:
    L, q = _model_size(model)
    seqs = check_sequences(seqs, L, q)
    if seqs.ndim != 2:
        raise ValueError(f"sequences must have shape (M, L), got {tuple(seqs.shape)}")
    if seqs.shape[0] == 0:
        raise ValueError("no sequences: the data set is empty")
    return seqs, check_weights(weights, seqs.shape[0])


def _sequence_site_nll(model: Any, s: Int[Array, " L"]) -> Float[Array, " L"]:
    logp = jax.nn.log_softmax(all_conditional_logits(model, s), axis=-1)
    return -jnp.take_along_axis(logp, s[:, None], axis=-1)[:, 0]


# The numerical cores are jitted (equinox filter_jit: the model's arrays are traced, the rest is
# static), so eager calls compile once per model structure and shape instead of dispatching op by
# op; input checks run before, on concrete values. Inside an outer jit they simply inline.


# Attention layers with this many heads or more evaluate fits' losses through their implied
# couplings and the dense kernel: building J costs H L^2 q^2 once per evaluation, after which
# every sequence costs L^2 q row additions, against H L^2 q multiply-adds per sequence (as many
# small matrix products) on the attention path. Measured on CPU, the crossover is near 3 heads.
_COUPLING_ROUTE_HEADS = 3


def _dense_parts(model: Any, via_couplings: bool = False) -> tuple[jax.Array, jax.Array] | None:
    """(fields, coupling matrix W) of a dense model, for the row-gather kernels of `_dense_pl`;
    None for other models. A trainable wrapper opts in with a `dense_parts()` method; with
    `via_couplings`, any model with `couplings()` (an attention layer) is evaluated that way."""
    if isinstance(model, PottsModel):
        return model.fields, _dense_pl.coupling_matrix(model.couplings)
    parts = getattr(model, "dense_parts", None)
    if callable(parts):
        return parts()
    if via_couplings and callable(getattr(model, "couplings", None)):
        C = model.couplings()
        fields = getattr(model, "fields", None)
        h = jnp.zeros(C.shape[::2], C.dtype) if fields is None else fields
        return h, _dense_pl.coupling_matrix(C)
    return None


def _missing_gap(model: Any, gaps: str) -> int | None:
    """The gap colour for ``gaps="missing"`` (None for "state"), checking the model can take it."""
    gap = gap_colour(gaps)
    if gap is not None and _dense_parts(model, via_couplings=True) is None:
        raise TypeError(
            f"gaps='missing' needs a model with Potts couplings (PottsModel or a model with couplings()); "
            f"{type(model).__name__} has none"
        )
    return gap


@eqx.filter_jit
def _sequence_pseudo_likelihoods(model: Any, seqs: Int[Array, "M L"], gap: int | None = None) -> Float[Array, " M"]:
    parts = _dense_parts(model, via_couplings=gap is not None)
    if parts is not None:
        return _dense_pl.sequence_nll(*parts, seqs, gap)
    return jnp.sum(jax.vmap(lambda s: _sequence_site_nll(model, s))(seqs), axis=-1)


def sequence_pseudo_likelihoods(model: Any, seqs: Int[Array, "M L"], gaps: str = "state") -> Float[Array, " M"]:
    r"""Negative log pseudo-likelihood of each sequence, $\sum_i -\log p(s^m_i \mid s^m_{-i})$
    (``gaps="missing"``: over non-gap sites, gaps as missing data; module docstring)."""
    seqs, _ = _prepare(model, seqs, None)
    return _sequence_pseudo_likelihoods(model, seqs, _missing_gap(model, gaps))


@eqx.filter_jit
def _weighted_sum(
    model: Any,
    seqs: Int[Array, "M L"],
    weights: Float[Array, " M"],
    mesh: Any,
    via_couplings: bool = False,
    gap: int | None = None,
) -> Scalar:
    parts = _dense_parts(model, via_couplings or gap is not None)
    if parts is not None:
        return _dense_pl.weighted_nll_sum(*parts, seqs, weights, mesh, gap)
    params, static = eqx.partition(model, eqx.is_array)

    def shard_sum(params, s, w):
        per = _sequence_pseudo_likelihoods(eqx.combine(params, static), s)
        return jnp.sum(w.astype(per.dtype) * per)

    return sum_over_rows(shard_sum, mesh)(params, seqs, weights)


def weighted_pseudo_likelihood_sum(
    model: Any,
    seqs: Int[Array, "M L"],
    weights: Float[Array, " M"] | None,
    *,
    mesh: Any = None,
    via_couplings: bool | None = None,
    gaps: str = "state",
) -> Scalar:
    r"""$\sum_m w_m \sum_i -\log p(s^m_i \mid s^m_{-i})$, unnormalised (the data term of fits).

    Dense Potts models use the fused row-gather kernel of `jaxpotts._dense_pl` (value and
    gradient in one pass, $O(M L^2 q)$ instead of the $O(M L^2 q^2)$ of a one-hot contraction).
    `via_couplings=True` evaluates a model with a `couplings()` method (a `FactoredAttention`)
    the same way, through its implied couplings $J_{ij}(a,b) = \sum_h A^h_{ij} V^h(a,b)$ —
    exactly the same function of the parameters (docs/mlm_equals_pl.md), at a cost independent
    of the number of heads; None (default) does so for attention layers with 3 heads or more.
    With `mesh` (`jaxpotts.sharding.data_mesh()`) the sequences are split over its devices.
    ``gaps="missing"`` treats gaps as missing data (module docstring; always through the
    couplings).
    """
    seqs, weights = _prepare(model, seqs, weights)
    gap = _missing_gap(model, gaps)
    if weights is None:
        weights = jnp.ones(seqs.shape[:1], jnp.result_type(float))
    if via_couplings is None:
        via_couplings = int(getattr(model, "n_heads", 0) or 0) >= _COUPLING_ROUTE_HEADS
    return _weighted_sum(model, seqs, weights, mesh, bool(via_couplings), gap)


def pseudo_likelihood(
    model: Any, seqs: Int[Array, "M L"], weights: Float[Array, " M"] | None = None, gaps: str = "state"
) -> Scalar:
    r"""Negative log pseudo-likelihood, summed over sites, weighted mean over sequences:
    $\sum_m w_m \sum_i -\log p(s^m_i \mid s^m_{-i}) / \sum_m w_m$ (``gaps="missing"``:
    $\mathrm{PL}_g$ of the module docstring, gaps as missing data).

    Works for joint and non-symmetric (conditional) Potts models and for any model whose
    `__call__(s[L])` returns the L conditional logits.
    """
    seqs, weights = _prepare(model, seqs, weights)
    gap = _missing_gap(model, gaps)
    if weights is None:
        return jnp.mean(_sequence_pseudo_likelihoods(model, seqs, gap))
    return _weighted_sum(model, seqs, weights, None, False, gap) / jnp.sum(weights)


def mlm_loss(
    model: Any, seqs: Int[Array, "M L"], weights: Float[Array, " M"] | None = None, gaps: str = "state"
) -> Scalar:
    r"""Masked-language-modelling loss with every site masked in turn: mean over sites of
    $-\log p(s_i \mid s_{-i})$, weighted mean over sequences. Equals `pseudo_likelihood / L`."""
    L, _ = _model_size(model)
    return pseudo_likelihood(model, seqs, weights, gaps) / L


def site_logits(model: Any, s: Int[Array, " L"], i: Int[Array, ""]) -> Float[Array, " q"]:
    r"""Logits of the single conditional $p(s_i \mid s_{-i})$ of one sequence.

    Potts models compute only row i of the local fields; models with a `site_logits(s, i)`
    method (attention layers) use it (one Transformer pass instead of L); any other model
    falls back to row i of `model(s)`.
    """
    if isinstance(model, PottsModel):
        x = jax.nn.one_hot(s, model.q, dtype=model.fields.dtype)
        return model.fields[i] + einsum("jab,jb->a", model.couplings[i], x)
    if isinstance(model, FactoredPotts):
        return model.fields[i] + matmul(model.J[i], model.U[:, s].T)
    if hasattr(model, "site_logits"):
        return model.site_logits(s, i)
    return model(s)[i]


def masked_site_nll(model: Any, seqs: Int[Array, "M L"], sites: Int[Array, " M"]) -> Float[Array, " M"]:
    r"""$-\log p(s^m_{i_m} \mid s^m_{-i_m})$ for one masked site $i_m$ per sequence."""
    seqs, _ = _prepare(model, seqs, None)
    sites = jnp.asarray(sites)
    if sites.shape != seqs.shape[:1] or not jnp.issubdtype(sites.dtype, jnp.integer):
        raise ValueError(
            f"sites must be integers of shape (M,) = ({seqs.shape[0]},), got {sites.dtype}{tuple(sites.shape)}"
        )
    value = concrete(sites)
    L = seqs.shape[1]
    if value is not None and value.size and (value.min() < 0 or value.max() >= L):
        raise ValueError(f"sites must be in 0..{L - 1}, found min {int(value.min())}, max {int(value.max())}")

    return _masked_site_nll(model, seqs, sites)


@eqx.filter_jit
def _masked_site_nll(model: Any, seqs: Int[Array, "M L"], sites: Int[Array, " M"]) -> Float[Array, " M"]:
    def nll(s, i):
        return -jax.nn.log_softmax(site_logits(model, s, i))[s[i]]

    return jax.vmap(nll)(seqs, sites)


def stochastic_mlm_loss(
    model: Any, seqs: Int[Array, "M L"], key: Any, weights: Float[Array, " M"] | None = None
) -> Scalar:
    r"""MLM loss with one uniformly random masked site per sequence (how Transformers train):
    $\sum_m w_m\,[-\log p(s^m_{i_m} \mid s^m_{-i_m})] / \sum_m w_m$, $i_m \sim \mathcal U\{0..L-1\}$.

    Unbiased: its expectation over `key` is `mlm_loss(model, seqs, weights)`. It costs one
    conditional per sequence instead of L (one Transformer pass instead of L).
    """
    seqs, weights = _prepare(model, seqs, weights)
    M, L = seqs.shape
    sites = jax.random.randint(key, (M,), 0, L)
    return weighted_mean(masked_site_nll(model, seqs, sites), weights)


# ----------------------------------------------------------------------------- regularisation


def coupling_norm2(model: Any) -> Scalar:
    r"""$\sum_{i \ne j}\sum_{a,b} J_{ij}(a,b)^2$ over ordered pairs (diagonal blocks excluded).

    Dense and factored Potts models use their couplings ($\sum_{ij} J_{ij}^2\,\|U\|_F^2$ for
    factored); other models provide `coupling_norm2()` (an attention layer: its implied
    couplings $\sum_h A^h_{ij} V^h(a,b)$; a Transformer: the squared norm of its weights).
    """
    if isinstance(model, PottsModel):
        L = model.L
        off = 1.0 - jnp.eye(L, dtype=model.couplings.dtype)
        return jnp.sum(off[:, :, None, None] * model.couplings**2)
    if isinstance(model, FactoredPotts):
        J = model.J * (1.0 - jnp.eye(model.L, dtype=model.J.dtype))
        return jnp.sum(J**2) * jnp.sum(model.U**2)
    if hasattr(model, "coupling_norm2"):
        return model.coupling_norm2()
    raise TypeError(f"model {type(model).__name__} has no couplings to regularise (no coupling_norm2 method)")


def field_norm2(model: Any) -> Scalar:
    r"""$\sum_i \sum_a h_i(a)^2$ (zero for models without fields)."""
    if isinstance(model, (PottsModel, FactoredPotts)):
        return jnp.sum(model.fields**2)
    if hasattr(model, "field_norm2"):
        return model.field_norm2()
    return jnp.zeros(())


def l2_penalty(model: Any, l2: Any = 0.0, l2_fields: Any = 0.0) -> Scalar:
    r"""The L2 penalty of the package's one convention (module docstring, docs/conventions.md):

    $$R(\theta) = \frac{\lambda_J}{2}\sum_{i \ne j}\|J_{ij}\|_F^2 + \lambda_h \sum_i \|h_i\|^2 ,$$

    added to `pseudo_likelihood` (a weighted mean over sequences). $\lambda_J$ = `l2` equals
    plmDCA's `lambda_J`, $\lambda_h$ = `l2_fields` its `lambda_h`. Terms with a zero
    coefficient given as a Python number are skipped.
    """
    total = jnp.zeros(())
    if not (isinstance(l2, (int, float)) and l2 == 0):
        total = total + 0.5 * l2 * coupling_norm2(model)
    if not (isinstance(l2_fields, (int, float)) and l2_fields == 0):
        total = total + l2_fields * field_norm2(model)
    return total


def l2_rule(L: int, q: int, m_eff: float, *, factor: float = 0.01, floor: float = 0.0) -> float:
    r"""$\lambda_J$ for an alignment of L sites, q colours and $M_\mathrm{eff}$ effective sequences:

    $$\lambda_J = \max\Bigl(\text{floor},\ \frac{\text{factor}\,(q-1)(L-1)}{M_\mathrm{eff}}\Bigr).$$

    The second term is plmc/EVcouplings' and GREMLIN's rule (``factor`` = 0.01; CCMpred's
    $\lambda_\mathrm{pair} = 0.2 (L-1)$ at q = 21) moved to this package's per-$M_\mathrm{eff}$
    convention: those tools add $c (q-1)(L-1) \sum_{i<j}\|J_{ij}\|^2$ to a pseudo-likelihood
    *summed* over sequences, a Gaussian prior of fixed weight whose share of the objective falls
    as the data grow; the $(q-1)(L-1)$ free couplings of each conditional scale it. ``floor`` is
    a constant per-$M_\mathrm{eff}$ penalty (plmDCA's 0.01), which wins for deep alignments
    ($M_\mathrm{eff} > \text{factor}\,(q-1)(L-1)/\text{floor}$). Regularisation of contact fits:
    `jaxpotts.defaults.PLM`; of mutation-effect fits: `jaxpotts.mutations.plm_settings` (no floor).
    """
    for name, value in (("factor", factor), ("floor", floor)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not (isinstance(m_eff, (int, float, np.floating)) and math.isfinite(m_eff) and m_eff > 0):
        raise ValueError(f"m_eff must be a finite number > 0, got {m_eff!r}")
    if L < 1 or q < 1:
        raise ValueError(f"L and q must be >= 1, got L={L}, q={q}")
    return max(float(floor), float(factor) * (q - 1) * (L - 1) / float(m_eff))


def site_negative_log_likelihood(
    model: Any, seqs: Int[Array, "M L"], site: int, weights: Float[Array, " M"] | None = None
) -> Scalar:
    r"""Weighted mean over sequences of $-\log p(s_i \mid s_{-i})$ for one site i.

    For Potts models only row i of the local fields is computed ($O(M L q)$ for factored,
    $O(M L q^2)$ dense), which is the loss of learning one conditional (replica scenario).
    """
    seqs, weights = _prepare(model, seqs, weights)
    L = seqs.shape[1]
    if not (isinstance(site, int) and 0 <= site < L):
        raise ValueError(f"site must be an integer in 0..{L - 1}, got {site!r}")

    def nll(s):
        return -jax.nn.log_softmax(site_logits(model, s, site))[s[site]]

    return weighted_mean(jax.vmap(nll)(seqs), weights)

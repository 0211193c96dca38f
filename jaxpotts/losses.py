r"""Losses: negative log pseudo-likelihood and masked-language-modelling (MLM) loss.

For a model whose conditionals are $p_\theta(s_i = a \mid s_{-i}) = \mathrm{softmax}_a(\ell_i(a))$
and data $s^{(1..M)}$ with weights $w_m \ge 0$ ($\bar w$-normalised weighted mean):

$$\mathrm{PL}(\theta) = \frac{\sum_m w_m \sum_{i=1}^L -\log p_\theta(s^m_i \mid s^m_{-i})}{\sum_m w_m},
\qquad \mathrm{MLM}(\theta) = \mathrm{PL}(\theta) / L .$$

The MLM loss masks every site in turn and averages over sites; the pseudo-likelihood sums over
sites. For a factored attention layer the identity $L\cdot\mathrm{MLM}(fa) =
\mathrm{PL}(fa.\mathrm{to\_potts}())$ is algebraic (docs/mlm_equals_pl.md).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Scalar

from ._validation import check_sequences, concrete
from .potts import FactoredPotts, PottsModel, local_fields

__all__ = [
    "all_conditional_logits",
    "site_negative_log_likelihood",
    "pseudo_likelihood",
    "mlm_loss",
    "weighted_mean",
    "check_weights",
]


def check_weights(weights: Any, M: int) -> Optional[jax.Array]:
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


def weighted_mean(values: Float[Array, " M"], weights: Optional[Float[Array, " M"]]) -> Scalar:
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


def _prepare(model: Any, seqs: Any, weights: Any) -> tuple[jax.Array, Optional[jax.Array]]:
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


def pseudo_likelihood(
    model: Any, seqs: Int[Array, "M L"], weights: Optional[Float[Array, " M"]] = None
) -> Scalar:
    r"""Negative log pseudo-likelihood, summed over sites, weighted mean over sequences:
    $\sum_m w_m \sum_i -\log p(s^m_i \mid s^m_{-i}) / \sum_m w_m$.

    Works for joint and non-symmetric (conditional) Potts models and for any model whose
    `__call__(s[L])` returns the L conditional logits.
    """
    seqs, weights = _prepare(model, seqs, weights)
    per_seq = jnp.sum(jax.vmap(lambda s: _sequence_site_nll(model, s))(seqs), axis=-1)
    return weighted_mean(per_seq, weights)


def mlm_loss(model: Any, seqs: Int[Array, "M L"], weights: Optional[Float[Array, " M"]] = None) -> Scalar:
    r"""Masked-language-modelling loss with every site masked in turn: mean over sites of
    $-\log p(s_i \mid s_{-i})$, weighted mean over sequences. Equals `pseudo_likelihood / L`."""
    L, _ = _model_size(model)
    return pseudo_likelihood(model, seqs, weights) / L


def site_negative_log_likelihood(
    model: Any, seqs: Int[Array, "M L"], site: int, weights: Optional[Float[Array, " M"]] = None
) -> Scalar:
    r"""Weighted mean over sequences of $-\log p(s_i \mid s_{-i})$ for one site i.

    For Potts models only row i of the local fields is computed ($O(M L q)$ for factored,
    $O(M L q^2)$ dense), which is the loss of learning one conditional (replica scenario).
    """
    seqs, weights = _prepare(model, seqs, weights)
    L = seqs.shape[1]
    if not (isinstance(site, int) and 0 <= site < L):
        raise ValueError(f"site must be an integer in 0..{L - 1}, got {site!r}")

    if isinstance(model, PottsModel):
        def logits(s):
            x = jax.nn.one_hot(s, model.q, dtype=model.fields.dtype)
            return model.fields[site] + jnp.einsum("jab,jb->a", model.couplings[site], x)
    elif isinstance(model, FactoredPotts):
        def logits(s):
            return model.fields[site] + model.J[site] @ model.U[:, s].T
    else:
        def logits(s):
            return all_conditional_logits(model, s)[site]

    def nll(s):
        return -jax.nn.log_softmax(logits(s))[s[site]]

    return weighted_mean(jax.vmap(nll)(seqs), weights)

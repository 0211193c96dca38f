r"""Comparing a learned model with the model that generated the data.

Two questions come up whenever a model is fitted to samples of a known Potts model (the demo,
the attention-vs-Transformer example, tests):

* **How low can the loss go?** No predictor of a masked site beats the generating model, so the
  floor of the MLM loss is its conditional entropy per site,
  $S = \frac1L \sum_i \mathbb E_p[-\log p(s_i \mid s_{-i})]$. `entropy_floor` estimates it on
  held-out samples as the MLM loss of the true model (exact in expectation; enumerate with
  `jaxpotts.exact.conditional_entropy` when $q^L$ is small).
* **Were the couplings recovered?** A factored layer with one head learns
  $J_{ij}(a,b) = A_{ij} V(a,b)$, but $(A, V)$ is identifiable only up to scale
  ($A \to cA$, $V \to V/c$), sign (c < 0) and gauge (shifts of $V$ that change no conditional).
  `compare_factored` removes all three before comparing with the true $(J, U)$.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import losses
from .potts import FactoredPotts, double_centre, zero_sum_gauge  # double_centre: importable here for one release

__all__ = ["CouplingComparison", "compare_factored", "entropy_floor"]


@dataclasses.dataclass(frozen=True)
class CouplingComparison:
    """Learned against true couplings, after removing scale, sign and gauge (`compare_factored`).

    Attributes:
        J_true: true $J_{ij}$, (L, L).
        J_learned: learned attention rescaled to the scale of J and symmetrised, (L, L).
        U_true, U_learned: zero-sum $U'$ and $V'$, each of unit Frobenius norm, V' with the sign
            that aligns it with U', (q, q).
        corr_J: Pearson correlation of the off-diagonal entries of J_true and J_learned.
        corr_U: Pearson correlation of the entries of U' and V'.
        rel_err_J: $\\|J_\\text{learned} - J\\|_F / \\|J\\|_F$ off the diagonal.
        rel_err_couplings: $\\|C'_\\text{learned} - C'_\\text{true}\\|_F / \\|C'_\\text{true}\\|_F$ of the
            full (L, L, q, q) couplings in the zero-sum gauge (scale- and gauge-free).
        asymmetry: $\\|A - A^T\\|_F / \\|A\\|_F$ of the rescaled learned attention.
    """

    J_true: np.ndarray
    J_learned: np.ndarray
    U_true: np.ndarray
    U_learned: np.ndarray
    corr_J: float
    corr_U: float
    rel_err_J: float
    rel_err_couplings: float
    asymmetry: float

    def metrics(self) -> dict:
        """The scalar results as a JSON-ready dict."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not isinstance(getattr(self, f.name), np.ndarray)
        }


def _attention_and_values(learned) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, V, dense couplings) of a one-head factored model."""
    from .attention import FactoredAttention

    if isinstance(learned, FactoredAttention):
        if learned.n_heads != 1:
            raise ValueError(f"compare_factored needs a one-head layer (J_ij U(a,b)), got n_heads={learned.n_heads}")
        A, V = learned.attention()[0], learned.values[0]
        dense = learned.to_potts()
    elif isinstance(learned, FactoredPotts):
        A, V = learned.J, learned.U
        dense = learned.to_dense()
    else:
        raise TypeError(
            f"learned must be a one-head FactoredAttention or a FactoredPotts, got {type(learned).__name__}"
        )
    C = np.asarray(zero_sum_gauge(dense).couplings, np.float64)
    return np.asarray(A, np.float64), np.asarray(V, np.float64), C


def compare_factored(learned: FactoredAttention | FactoredPotts, true: FactoredPotts) -> CouplingComparison:  # noqa: F821
    r"""Compare a learned factored model $A_{ij} V(a,b)$ with the true $J_{ij} U(a,b)$.

    Steps: (1) gauge: $U' = $ `double_centre(U)`, $V' = $ `double_centre(V)`; (2) sign
    $\sigma = \mathrm{sign}\langle U', V'\rangle$; (3) scale: $\hat U = U'/\|U'\|_F$,
    $\hat V = \sigma V'/\|V'\|_F$, and the attention is rescaled by the factor that keeps
    $A_{ij} V'$ fixed, $\tilde A = \sigma A \|V'\|_F / \|U'\|_F$, then symmetrised,
    $\frac12(\tilde A + \tilde A^T)$, and compared with J off the diagonal. The relative error
    of the full gauge-fixed couplings needs none of these choices.

    Args:
        learned: a one-head `FactoredAttention` (free or softmax attention) or a `FactoredPotts`.
        true: the generating `FactoredPotts`.
    """
    if not isinstance(true, FactoredPotts):
        raise TypeError(f"true must be a FactoredPotts, got {type(true).__name__}")
    A, V, C_learned = _attention_and_values(learned)
    if A.shape != tuple(true.J.shape) or V.shape != tuple(true.U.shape):
        raise ValueError(f"learned model has L={A.shape[0]}, q={V.shape[0]} but the true one L={true.L}, q={true.q}")
    U_t = double_centre(np.asarray(true.U, np.float64))
    V_l = double_centre(np.asarray(V, np.float64))
    norm_u, norm_v = np.linalg.norm(U_t), np.linalg.norm(V_l)
    if norm_u == 0 or norm_v == 0:
        raise ValueError(
            "a colour matrix is zero in the zero-sum gauge (it changes no conditional): nothing to compare"
        )
    sign = float(np.sign(np.sum(U_t * V_l))) or 1.0
    A_scaled = A * sign * norm_v / norm_u
    A_sym = 0.5 * (A_scaled + A_scaled.T)
    J = np.asarray(true.J, np.float64)
    off = ~np.eye(J.shape[0], dtype=bool)
    C_true = np.asarray(zero_sum_gauge(true.to_dense()).couplings, np.float64)
    U_n, V_n = U_t / norm_u, sign * V_l / norm_v
    return CouplingComparison(
        J_true=J,
        J_learned=A_sym,
        U_true=U_n,
        U_learned=V_n,
        corr_J=float(np.corrcoef(A_sym[off], J[off])[0, 1]),
        corr_U=float(np.corrcoef(V_n.ravel(), U_n.ravel())[0, 1]),
        rel_err_J=float(np.linalg.norm(A_sym[off] - J[off]) / np.linalg.norm(J[off])),
        rel_err_couplings=float(np.linalg.norm(C_learned - C_true) / np.linalg.norm(C_true)),
        asymmetry=float(np.linalg.norm(A_scaled - A_scaled.T) / np.linalg.norm(A_scaled)),
    )


def entropy_floor(model, seqs, weights: np.ndarray | None = None) -> tuple[float, float]:
    r"""Estimate of the MLM floor, the conditional entropy per site of the generating `model`.

    Returns the (weighted) mean over sequences of $\frac1L\sum_i -\log p(s_i \mid s_{-i})$ under
    `model` and its standard error. With samples of `model` itself this is unbiased for
    $S = \frac1L\sum_i \mathbb E_p[-\log p(s_i\mid s_{-i})]$. Evaluate trained models on the
    same sequences: their excess loss over the floor is then a paired, low-noise difference.
    """
    per_seq = np.asarray(losses.sequence_pseudo_likelihoods(model, seqs), np.float64) / model.L
    if per_seq.size < 2:
        raise ValueError(f"entropy_floor needs at least 2 sequences for a standard error, got {per_seq.size}")
    if weights is None:
        return float(per_seq.mean()), float(per_seq.std(ddof=1) / np.sqrt(per_seq.size))
    w = np.asarray(weights, np.float64)
    if w.shape != per_seq.shape or not np.all(w >= 0) or not w.sum() > 0:
        raise ValueError(f"weights must be non-negative with shape ({per_seq.size},) and a positive sum")
    mean = float(np.sum(w * per_seq) / w.sum())
    n_eff = w.sum() ** 2 / np.sum(w**2)
    var = float(np.sum(w * (per_seq - mean) ** 2) / w.sum())
    return mean, float(np.sqrt(var / max(n_eff - 1, 1.0)))

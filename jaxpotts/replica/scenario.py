r"""The replica model scenario: learning the conditional of one site with the colour matrix known.

Site 0 is predicted from the other $N$ sites. With one-hot inputs, the student's logits are
$z_a(s) = \sum_j J_j\,U(a, s_j)$ and it minimises
$\sum_\mu \ell(s_0^\mu, z(s^\mu)) + \tfrac{\lambda N}{2}|J|^2$ with $\ell(y,z) = -z_y + \log\sum_a e^{z_a}$.
The teacher's couplings are $J^*_j \sim \mathcal N(0, \rho/N)$.

Everything the theory needs from the colour matrix $U$ is the centred colour covariance

$$C = \frac{U U^\top}{q} - \mu\mu^\top = B B^\top, \qquad \mu_a = \frac1q \sum_b U(a,b),$$

the covariance of the column $U(\cdot, s_j)$ when $s_j$ is uniform. $B$ has shape $(q, K)$ with
$K = \operatorname{rank} C$; the centred logits of a student (teacher) are $B u$ ($B u^*$) with
$u, u^* \in \mathbb R^K$ Gaussian in the high-dimensional limit (docs/replica.md).

**The ridge convention and the package's L2 convention** (the one place the mapping is
stated; docs/theory.md section 4.1, docs/conventions.md). The replica parameter $\lambda$
(`lam`) penalises the *summed* loss by $\frac{\lambda N}{2}|J|^2$, the scaling under which
$\lambda = O(1)$ as $N, M \to \infty$. The package's convention (`jaxpotts.losses.l2_penalty`,
plmDCA's `lambda_J`) penalises the loss *averaged* over the $M$ sequences by
$\frac{\lambda_J}{2}\sum_{i \ne j}\|J_{ij}\|_F^2$, and the student's couplings are
$J_{0j}(a,b) = J_j U(a,b)$ (all other blocks zero), so $\sum_{i\ne j}\|J_{ij}\|_F^2 = |J|^2\,\|U\|_F^2$.
Dividing the replica objective by $M = \alpha N$ gives $\frac{\lambda}{2\alpha}|J|^2$, hence

$$\lambda_J = \frac{\lambda}{\alpha\,\|U\|_F^2}, \qquad \lambda = \lambda_J\,\alpha\,\|U\|_F^2$$

(`l2_from_lam`, `lam_from_l2`; for $U = I_q$, $\|U\|_F^2 = q$). With it, `simulate`'s fit
minimises exactly `pseudo_likelihood + l2_penalty(model, l2_from_lam(lam, alpha, U))` of the
student's `FactoredPotts` (up to the constant $N\log q$ of its $N$ uniform conditionals).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, ScalarLike

from .._validation import symmetry_tolerance

__all__ = ["Scenario", "KINDS", "l2_from_lam", "lam_from_l2"]

KINDS = ("star", "independent")

# An eigenvalue of C below this fraction of the largest one counts as zero (numerical rank).
_RANK_RTOL = 1e-10


def _concrete(x, name: str) -> np.ndarray:
    if isinstance(x, jax.core.Tracer):
        raise TypeError(
            f"Scenario needs a concrete {name} (its rank fixes array shapes); build the "
            "Scenario outside jit/vmap and pass it in as an argument"
        )
    try:
        return np.asarray(x)
    except TypeError as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}") from err


class Scenario(eqx.Module):
    r"""A replica model scenario (docs/theory.md section 4, "The replica scenario").

    Args:
        q: number of colours (>= 2); must match `U`.
        U: colour interaction matrix, shape (q, q): real, finite, symmetric and with
            constant row sums $\sum_b U(a,b) = r$ for every $a$ (so that the mean of the
            input features shifts all logits equally and drops out of the softmax).
            $U = I$ (the standard Potts model) qualifies.
        rho: teacher strength, $|J^*|^2 \to \rho$ (> 0, finite).
        kind: ``"star"`` (a generalized Potts model on a star graph centred on site 0,
            $p(s) \propto \exp(\sum_j J^*_j U(s_0, s_j))$) or ``"independent"`` (inputs
            i.i.d. uniform, $s_0 \sim \mathrm{softmax}(z^*(s))$).

    Attributes:
        U: the colour matrix (float64 numpy array).
        B: $(q, K)$ factor of the centred colour covariance, $C = B B^\top$, columns along
            the eigenvectors of $C$ with non-zero eigenvalue (float64 numpy array).
        rho: the teacher strength.
        kind: the scenario kind (static).

    Raises:
        ValueError / TypeError with a message naming the problem for a bad q, U, rho or kind.
    """

    U: Float[np.ndarray, "q q"]
    B: Float[np.ndarray, "q K"]
    rho: Float[Array, ""]
    kind: str = eqx.field(static=True)

    def __init__(self, q: int, U, rho: float, kind: str = "star"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not isinstance(q, (int, np.integer)) or isinstance(q, bool):
            raise TypeError(f"q must be an integer, got {type(q).__name__} {q!r}")
        if q < 2:
            raise ValueError(f"q must be >= 2 colours, got q={q}")
        U = _concrete(U, "U")
        if U.dtype.kind not in "iuf":
            raise TypeError(f"U must be a real numeric array, got dtype {U.dtype}")
        U = U.astype(np.float64)
        if U.shape != (q, q):
            raise ValueError(f"U must have shape (q, q) = ({q}, {q}), got {tuple(U.shape)}")
        if not np.all(np.isfinite(U)):
            raise ValueError("U contains non-finite values (NaN or inf)")
        tol = symmetry_tolerance(U)
        asym = float(np.max(np.abs(U - U.T)))
        if asym > tol:
            raise ValueError(f"U must be symmetric: max |U(a,b) - U(b,a)| = {asym:.3g}")
        rows = U.sum(axis=1)
        spread = float(rows.max() - rows.min())
        if spread > q * tol:
            raise ValueError(
                "U must have constant row sums (sum_b U(a,b) the same for every a), found row sums "
                f"from {rows.min():.6g} to {rows.max():.6g}; otherwise the feature mean does not drop "
                "out of the softmax and the scenario's reduction to K Gaussian fields fails"
            )

        if isinstance(rho, jax.core.Tracer):
            rho_value = None
        else:
            rho_arr = np.asarray(rho)
            if rho_arr.shape != () or rho_arr.dtype.kind not in "iuf":
                raise TypeError(f"rho must be a real scalar, got {rho!r}")
            rho_value = float(rho_arr)
            if not np.isfinite(rho_value) or rho_value <= 0:
                raise ValueError(f"rho must be finite and > 0, got {rho_value}")

        mu = U.mean(axis=1)
        C = U @ U.T / q - np.outer(mu, mu)
        evals, evecs = np.linalg.eigh(C)
        top = float(evals.max())
        if top <= 0 or top < 1e-12 * max(float(np.max(np.abs(U))) ** 2, 1e-300):
            raise ValueError(
                "the centred colour covariance C = U U^T/q - mu mu^T is zero: every colour has the "
                "same interaction profile, so site 0 carries no learnable signal"
            )
        keep = evals > _RANK_RTOL * top
        order = np.argsort(-evals[keep])
        B = evecs[:, keep][:, order] * np.sqrt(evals[keep][order])[None, :]

        self.U = U
        self.B = B
        self.rho = rho if rho_value is None else np.float64(rho_value)
        self.kind = kind

    @property
    def q(self) -> int:
        """Number of colours."""
        return self.U.shape[0]

    @property
    def K(self) -> int:
        """Numerical rank of the centred colour covariance (dimension of the Gaussian fields)."""
        return self.B.shape[1]

    @property
    def C(self) -> np.ndarray:
        r"""Centred colour covariance $C = B B^\top = U U^\top/q - \mu\mu^\top$."""
        return np.asarray(self.B) @ np.asarray(self.B).T

    def __repr__(self) -> str:  # short, readable
        rho = self.rho
        try:
            rho = f"{float(rho):g}"
        except TypeError:
            rho = "<traced>"
        return f"Scenario(q={self.q}, K={self.K}, rho={rho}, kind={self.kind!r})"


def as_dtype(scenario: Scenario, dtype) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(U, B, rho) as JAX arrays of the working dtype."""
    return (
        jnp.asarray(scenario.U, dtype=dtype),
        jnp.asarray(scenario.B, dtype=dtype),
        jnp.asarray(scenario.rho, dtype=dtype),
    )


def _colour_norm2(U: ArrayLike) -> Array:
    U = jnp.asarray(U)
    if U.ndim != 2 or U.shape[0] != U.shape[1]:
        raise ValueError(f"U must be a square (q, q) colour matrix, got shape {tuple(U.shape)}")
    return jnp.sum(U**2)


def l2_from_lam(lam: ScalarLike, alpha: ScalarLike, U: Float[ArrayLike, "q q"]) -> Float[Array, ""]:
    r"""The package's L2 strength $\lambda_J$ (`jaxpotts.losses.l2_penalty`'s `l2`, plmDCA's
    `lambda_J`) equivalent to the replica ridge $\lambda$ at sample ratio $\alpha = M/N$:

    $$\lambda_J = \frac{\lambda}{\alpha\,\|U\|_F^2},$$

    so that $\frac{\lambda N}{2}|J|^2$ on the summed loss equals
    $M\cdot\frac{\lambda_J}{2}\sum_{i\ne j}\|J_{ij}\|_F^2$ with $J_{0j}(a,b) = J_j U(a,b)$
    (module docstring). Jittable; `U` is the scenario's colour matrix (``scenario.U``).
    """
    return lam / (alpha * _colour_norm2(U))


def lam_from_l2(l2: ScalarLike, alpha: ScalarLike, U: Float[ArrayLike, "q q"]) -> Float[Array, ""]:
    r"""Inverse of `l2_from_lam`: the replica ridge $\lambda = \lambda_J\,\alpha\,\|U\|_F^2$ of a
    package L2 strength $\lambda_J$ (`l2`) at sample ratio $\alpha$."""
    return l2 * alpha * _colour_norm2(U)

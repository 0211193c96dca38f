r"""Channel integrals of the replica scenario: quadrature rules and the saddle-point averages.

All averages are over $\xi, \eta \sim \mathcal N(0, I_K)$ with the cavity field
$w = \sqrt Q\,\xi$ and the teacher field $u^* = r\,\xi + s\,\eta$, where
$r = m/\sqrt Q$ and $s^2 = \rho - m^2/Q$ (so that $\mathrm{Var}\,u^* = \rho$,
$\mathrm{Cov}(u^*, w) = m$, $\mathrm{Var}\,w = Q$ per component). The student's functions
depend on $\xi$ only, so the inner average over $\eta$ is done first, giving the averaged
teacher kernel and its gradient

$$\bar T(y, \xi) = \mathbb E_\eta\, T(y, u^*), \qquad
  \bar G(y, \xi) = \mathbb E_\eta\, \nabla_{u^*} T(y, u^*) .$$

For ``star``, $T(y,u^*) = e^{b_y\cdot u^*}/c$ and both are closed-form,
$\bar T = \exp(r\,b_y\cdot\xi + s^2|b_y|^2/2)/c$ and $\bar G = \bar T\,b_y$; for
``independent``, $T = \mathrm{softmax}(B u^*)_y$, $\nabla T = T\,B^\top(e_y - p)$, and the
$\eta$-average is a second K-dimensional rule (a product grid, or one paired sample per
outer point for Monte Carlo).

Rules: `GaussHermite(n)` (tensor-product Gauss-Hermite, n nodes per dimension, nodes with
negligible weight pruned) and `MonteCarlo(n, seed)` (fixed samples, antithetic pairs; a fixed
seed makes every evaluation deterministic and the saddle-point map smooth). Both become
plain constant arrays inside jit.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .proximal import channel_functions, student_loss
from .scenario import Scenario

__all__ = [
    "GaussHermite",
    "MonteCarlo",
    "Integrator",
    "Nodes",
    "default_integrator",
    "make_nodes",
    "teacher_averages",
    "hat_integrals",
    "test_loss_integral",
    "train_loss_integral",
    "entropy_integral",
]

# Product-grid nodes whose weight is below this fraction of the largest are dropped: their
# contribution is far below double-precision rounding even for integrands growing like e^{3|xi|}.
_PRUNE = 1e-24
# Default Gauss-Hermite nodes per dimension, by K (see docs/replica.md for the accuracy study).
_DEFAULT_N = {1: 320, 2: 48, 3: 16}
_DEFAULT_N_INNER = {1: 64, 2: 16, 3: 10}


class GaussHermite(eqx.Module):
    r"""Tensor-product Gauss-Hermite rule for $\mathbb E_{\xi\sim\mathcal N(0,I_K)} g(\xi)$.

    Args:
        n: nodes per dimension for the cavity-field average (default by K, `_DEFAULT_N`).
        n_inner: nodes per dimension for the ``independent`` teacher average over $\eta$,
            whose integrand (a Gaussian-smoothed softmax) is smooth, so fewer suffice.
    """

    n: int | None = eqx.field(static=True, default=None)
    n_inner: int | None = eqx.field(static=True, default=None)

    def points(self, K: int) -> int:
        """Nodes per dimension of the outer (cavity-field) rule for K dimensions."""
        return self.n if self.n is not None else _DEFAULT_N.get(K, 8)

    def inner_points(self, K: int) -> int:
        """Nodes per dimension of the inner (independent teacher) rule for K dimensions."""
        return self.n_inner if self.n_inner is not None else _DEFAULT_N_INNER.get(K, 8)

    def outer(self, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Outer nodes (P, K) and weights (P,) of the pruned tensor-product rule."""
        return _gauss_hermite_grid(K, self.points(K))

    def inner(self, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner nodes (1, P_in, K), shared by every outer node, and weights (P_in,)."""
        nodes, weights = _gauss_hermite_grid(K, self.inner_points(K))
        return nodes[None], weights


class MonteCarlo(eqx.Module):
    r"""Fixed-sample Monte Carlo rule: $n$ standard normal points in antithetic pairs
    $\pm\xi$, weights $1/n$, drawn once (in float64, on the host) from the generator seeded
    by `seed`, so every evaluation is deterministic and the saddle-point map is smooth.

    For the ``independent`` scenario each outer point gets its own inner sample $\eta$
    (also antithetic), so the double average costs n evaluations, not n^2.
    """

    n: int = eqx.field(static=True, default=65536)
    seed: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if not isinstance(self.n, (int, np.integer)) or self.n < 2 or self.n % 2:
            raise ValueError(f"MonteCarlo needs an even number n >= 2 of points, got {self.n!r}")

    def _draws(self, K: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        half = rng.standard_normal((2, self.n // 2, K))
        return np.concatenate([half, -half], axis=1)  # (2, n, K): outer, inner

    def outer(self, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Outer points (n, K) and equal weights 1/n."""
        return self._draws(K)[0], np.full(self.n, 1.0 / self.n)

    def inner(self, K: int) -> tuple[np.ndarray, np.ndarray]:
        """One inner point per outer point, (n, 1, K), with weight 1."""
        return self._draws(K)[1][:, None, :], np.ones(1)


Integrator = GaussHermite | MonteCarlo


def default_integrator(scenario: Scenario) -> Integrator:
    """Gauss-Hermite when the product grid is small (K <= 3 for star, K <= 2 for independent,
    whose inner teacher average squares the grid), fixed-sample Monte Carlo beyond."""
    limit = 3 if scenario.kind == "star" else 2
    return GaussHermite() if scenario.K <= limit else MonteCarlo()


def _hermite_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal law, by Golub-Welsch.

    The nodes are the eigenvalues of the Jacobi matrix of the probabilists' Hermite
    polynomials (zero diagonal, off-diagonal sqrt(k)); the weights are the squared first
    components of the normalised eigenvectors. Unlike the three-term recurrence used by
    numpy's hermegauss, this stays finite for any n (tiny weights lose relative accuracy,
    but are far below the pruning threshold).
    """
    off = np.sqrt(np.arange(1, n, dtype=np.float64))
    x, vecs = np.linalg.eigh(np.diag(off, 1) + np.diag(off, -1))
    w = vecs[0] ** 2
    x = (x - x[::-1]) / 2  # exact symmetry
    w = (w + w[::-1]) / 2
    return x, w / w.sum()


def _gauss_hermite_grid(K: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"GaussHermite needs n >= 1 nodes per dimension, got {n!r}")
    return _cached_grid(int(K), int(n))


@functools.lru_cache(maxsize=32)
def _cached_grid(K: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The pruned product rule, computed once per (K, n): the eigendecomposition behind the
    nodes costs far more than a warm `solve` (read-only arrays, so the cache cannot be altered)."""
    x, w = _hermite_nodes(n)
    nodes = np.array(list(itertools.product(x, repeat=K)), dtype=np.float64).reshape(-1, K)
    weights = np.prod(np.array(list(itertools.product(w, repeat=K))).reshape(-1, K), axis=1)
    keep = weights > _PRUNE * weights.max()
    nodes, weights = nodes[keep], weights[keep]
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


class Nodes(NamedTuple):
    """Quadrature nodes as arrays: outer `xi` (P, K) with weights `wxi` (P,); inner `eta`
    (1 or P, P_eta, K) with weights `weta` (P_eta,)."""

    xi: Float[Array, "P K"]
    wxi: Float[Array, " P"]
    eta: Float[Array, "Pe Pin K"]
    weta: Float[Array, " Pin"]


def make_nodes(scenario: Scenario, integrator: Integrator, dtype) -> Nodes:
    """The rule's nodes for this scenario, as arrays of `dtype`."""
    if not isinstance(integrator, (GaussHermite, MonteCarlo)):
        raise TypeError(f"integrator must be GaussHermite or MonteCarlo, got {type(integrator).__name__}")
    K = scenario.K
    xi, wxi = integrator.outer(K)
    if scenario.kind == "independent":
        eta, weta = integrator.inner(K)
    else:  # star: the eta-average is closed-form
        eta, weta = np.zeros((1, 1, K)), np.ones(1)
    return Nodes(*(jnp.asarray(a, dtype=dtype) for a in (xi, wxi, eta, weta)))


# ----------------------------------------------------------------------------- teacher


def _star_log_c(B, rho):
    b2 = jnp.sum(B**2, axis=1)
    return jax.nn.logsumexp(rho * b2 / 2)


def teacher_averages(kind: str, B, rho, nodes: Nodes, r, s2) -> tuple[Float[Array, "P q"], Float[Array, "P q K"]]:
    r"""$\bar T(y, \xi_p)$ and $\bar G(y, \xi_p)$ at the outer nodes, for $u^* = r\xi + s\eta$."""
    xi = nodes.xi
    if kind == "star":
        b2 = jnp.sum(B**2, axis=1)
        logT = r * (xi @ B.T) + s2 * b2[None, :] / 2 - _star_log_c(B, rho)
        T = jnp.exp(logT)
        return T, T[:, :, None] * B[None, :, :]
    s = jnp.sqrt(s2)
    u_star = r * xi[:, None, :] + s * nodes.eta  # (P, Pin, K)
    p = jax.nn.softmax(u_star @ B.T, axis=-1)  # (P, Pin, q)
    wp = nodes.weta[None, :, None] * p
    T = jnp.sum(wp, axis=1)  # (P, q)
    # E[p_y (e_y - p)] = diag(T) - E[p p^T], then times B: gradient of T w.r.t. u*.
    ppT = jnp.einsum("pjy,pjk->pyk", wp, p)
    A = jax.vmap(jnp.diag)(T) - ppT  # (P, q, q)
    return T, A @ B


def _fields(m, Q, rho, dtype):
    """(sqrt Q, r = m/sqrt Q, s^2 = rho - r^2), guarded at Q = 0 and clamped at s^2 >= 0."""
    tiny = jnp.finfo(dtype).tiny
    sqQ = jnp.sqrt(jnp.maximum(Q, 0.0))
    r = m / jnp.sqrt(jnp.maximum(Q, tiny))
    r = jnp.where(Q > 0, r, 0.0)
    return sqQ, r, jnp.maximum(rho - r**2, 0.0)


def label_probabilities(B, rho) -> Float[Array, " q"]:
    r"""Star scenario: marginal label probabilities $\pi_y = e^{\rho|b_y|^2/2}/c$."""
    return jnp.exp(rho * jnp.sum(B**2, axis=1) / 2 - _star_log_c(B, rho))


def integration_points(kind: str, B, rho, nodes: Nodes, m, Q):
    r"""Cavity fields and teacher weights at which every average is evaluated.

    Returns `w` (P, q, K), `T` (P, q) and `G` (P, q, K) such that
    $\mathbb E \sum_y T(y,u^*)\,h(y, w) \approx \sum_p \omega_p \sum_y T_{py}\, h(y, w_{py})$
    and $\mathbb E \sum_y \nabla T(y,u^*)\cdot h(y, w) \approx \sum_p \omega_p \sum_y G_{py}\cdot h(y, w_{py})$.

    ``independent``: $w_{py} = \sqrt Q\,\xi_p$, $T = \bar T$, $G = \bar G$.
    ``star``: the tilt $e^{r b_y\cdot\xi}$ is absorbed into the Gaussian weight by the shift
    $\xi \to \xi + r b_y$ (so the rule integrates a function without exponential growth):
    $\mathbb E_\xi[\bar T(y,\xi) h(\sqrt Q\xi)] = \pi_y\,\mathbb E_\xi[h(\sqrt Q(\xi + r b_y))]$, i.e.
    $w_{py} = \sqrt Q(\xi_p + r b_y)$ (given $y$, $w \sim \mathcal N(m\,b_y, Q I)$), $T = \pi_y$,
    $G = \pi_y b_y$.
    """
    sqQ, r, s2 = _fields(m, Q, rho, nodes.xi.dtype)
    P = nodes.xi.shape[0]
    q = B.shape[0]
    if kind == "star":
        pi = label_probabilities(B, rho)
        w = sqQ * (nodes.xi[:, None, :] + r * B[None, :, :])
        T = jnp.broadcast_to(pi, (P, q))
        return w, T, T[:, :, None] * B[None, :, :]
    T, G = teacher_averages(kind, B, rho, nodes, r, s2)
    w = jnp.broadcast_to(sqQ * nodes.xi[:, None, :], (P, q, nodes.xi.shape[1]))
    return w, T, G


# ----------------------------------------------------------------------------- integrals


def _channel(B, w, V, u0):
    """u_prox, f, tr df/dw for label y at the field w[:, y]: shapes (P,q,K), (P,q,K), (P,q)."""
    q = B.shape[0]
    eye = jnp.eye(q, dtype=w.dtype)
    per_label = jax.vmap(channel_functions, in_axes=(None, 0, 0, None, 0))
    return jax.vmap(per_label, in_axes=(None, None, 0, None, 0))(B, eye, w, V, u0)


def hat_integrals(kind: str, B, rho, nodes: Nodes, m, Q, V, f0=None):
    r"""The channel averages (per unit $\alpha$) of the replica-symmetric saddle point:

    $$\hat Q/\alpha = \mathbb E\sum_y T |f|^2,\quad
      \hat V/\alpha = -\mathbb E\sum_y T\,\operatorname{tr}\partial_w f,\quad
      \hat m/\alpha = \mathbb E\sum_y \nabla_{u^*}T\cdot f .$$

    `f0` (P, q, K), a previous evaluation's $f$, warm-starts the proximal Newton iterations
    at $u_0 = w + V f_0$ ($f$ varies slowly with $(m, Q, V)$, $u_{\rm prox}$ does not);
    default $u_0 = w$. Returns (m_hat, Q_hat, V_hat) / alpha and the per-node quantities
    (T, u_prox, f) that the train loss and the next warm start reuse.
    """
    w, T, G = integration_points(kind, B, rho, nodes, m, Q)
    u, f, trdf = _channel(B, w, V, w if f0 is None else w + V * f0)
    wx = nodes.wxi
    Q_hat = jnp.einsum("p,py,py->", wx, T, jnp.sum(f**2, axis=-1))
    V_hat = -jnp.einsum("p,py,py->", wx, T, trdf)
    m_hat = jnp.einsum("p,pyk,pyk->", wx, G, f)
    return (m_hat, Q_hat, V_hat), (T, u, f)


def _label_losses(B, u):
    """l(y, B u[p, y]) for u of shape (P, q, K): shape (P, q)."""
    q = B.shape[0]
    z = u @ B.T  # (P, q, q)
    return student_loss(jnp.eye(q, dtype=z.dtype)[None], z)


def test_loss_integral(kind: str, B, rho, nodes: Nodes, m, Q):
    r"""Test loss $\mathbb E \sum_y T(y,u^*)\,\ell(y, B u)$ for $(u^*, u)$ with covariances
    $(\rho, m, Q)$: the student's field at a fresh input is distributed as the cavity field."""
    w, T, _ = integration_points(kind, B, rho, nodes, m, Q)
    return jnp.einsum("p,py,py->", nodes.wxi, T, _label_losses(B, w))


def train_loss_integral(B, nodes: Nodes, T, u):
    r"""Training loss per sample $\mathbb E \sum_y T(y, u^*)\,\ell(y, B\,u_{\rm prox}(y, w, V))$."""
    return jnp.einsum("p,py,py->", nodes.wxi, T, _label_losses(B, u))


def entropy_integral(kind: str, B, rho, nodes: Nodes):
    r"""Teacher's conditional entropy $\mathbb E \sum_y T(y,u^*)\,\ell(y, B u^*)$: the test
    loss of the teacher itself, i.e. the test loss at $m = Q = \rho$."""
    return test_loss_integral(kind, B, rho, nodes, rho, rho)

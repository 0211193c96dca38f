r"""The student's K-dimensional proximal map, by safeguarded Newton, with exact derivatives.

For a label $y$, a cavity field $w \in \mathbb R^K$ and a variance $V > 0$,

$$u_{\rm prox}(y, w, V) = \arg\min_u \; \phi(u), \qquad
  \phi(u) = \ell(y, B u) + \frac{|u - w|^2}{2V}, \qquad \ell(y, z) = -z_y + \log\sum_a e^{z_a}.$$

$\phi$ is strongly convex: its Hessian is $H = B^\top(\mathrm{diag}\,p - p p^\top) B + I/V \succeq I/V$
with $p = \mathrm{softmax}(B u)$, and its gradient is Lipschitz with constant
$L = 1/V + |B|_F^2/2$ (the softmax covariance has norm at most 1/2). The Newton step
$d = -H^{-1}\nabla\phi$ is taken in full when it passes the Armijo test, else the step
$\sqrt{t_s}\,d$ if that passes, else $t_s d$ with $t_s = d^\top H d/(L|d|^2) \le 1$, which
provably decreases $\phi$ by at least $t_s\,d^\top H d/2$. So the iteration is globally
convergent, locally quadratic, and costs three loss evaluations per step with no
data-dependent control flow besides the stopping test.

From the optimality condition $B^\top(p - e_y) + (u - w)/V = 0$ and the implicit function
theorem, $\partial u_{\rm prox}/\partial w = H^{-1}/V$ and
$\partial u_{\rm prox}/\partial V = H^{-1}(u - w)/V^2$; `prox` has a custom JVP using them,
so derivatives never differentiate through the Newton iterations. The channel functions are

$$f = \frac{u_{\rm prox} - w}{V}, \qquad
  \operatorname{tr}\frac{\partial f}{\partial w} = \frac{\operatorname{tr} H^{-1}/V - K}{V}.$$
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["prox", "channel_functions", "student_loss"]

_MAX_NEWTON = 100


def student_loss(e_y: Float[Array, " q"], z: Float[Array, "... q"]) -> Float[Array, ...]:
    r"""$\ell(y, z) = -z_y + \log\sum_a e^{z_a}$ with $y$ given one-hot as `e_y`."""
    return jax.nn.logsumexp(z, axis=-1) - jnp.sum(e_y * z, axis=-1)


# Tiny matrix products are written as broadcast-multiply-sum: XLA fuses them into the
# surrounding elementwise loops, while (batched) dot calls on 2x3 matrices cost far more than
# their arithmetic on CPU.
def _logits(B, u):
    """B @ u for u (..., K): shape (..., q)."""
    return jnp.sum(B * u[..., None, :], axis=-1)


def _BT(B, v):
    """B^T @ v for v (..., q): shape (..., K)."""
    return jnp.sum(B * v[..., :, None], axis=-2)


def _hessian(B, u, V):
    p = jax.nn.softmax(_logits(B, u), axis=-1)
    Bp = _BT(B, p)
    outer_b = B[:, :, None] * B[:, None, :]  # (q, K, K)
    K = B.shape[1]
    H = jnp.sum(p[..., :, None, None] * outer_b, axis=-3) - Bp[..., :, None] * Bp[..., None, :]
    return H + jnp.eye(K, dtype=u.dtype) / V, p


# Small symmetric positive definite systems are solved by an unrolled Cholesky factorisation:
# batched LAPACK calls on tiny matrices cost far more than the arithmetic (K is static).
_UNROLL_MAX_K = 8


def _cholesky(H):
    K = H.shape[-1]
    L = [[None] * K for _ in range(K)]
    for j in range(K):
        diag = H[..., j, j] - sum((L[j][k] ** 2 for k in range(j)), start=jnp.zeros_like(H[..., j, j]))
        L[j][j] = jnp.sqrt(diag)
        for i in range(j + 1, K):
            off = H[..., i, j] - sum((L[i][k] * L[j][k] for k in range(j)), start=jnp.zeros_like(H[..., i, j]))
            L[i][j] = off / L[j][j]
    return L


def spd_solve(H, g):
    """Solve H x = g for a symmetric positive definite H (K x K; batched under vmap)."""
    K = H.shape[-1]
    if K > _UNROLL_MAX_K:
        return jnp.linalg.solve(H, g)
    L = _cholesky(H)
    y = [None] * K
    for i in range(K):
        y[i] = (g[..., i] - sum((L[i][k] * y[k] for k in range(i)), start=jnp.zeros_like(g[..., i]))) / L[i][i]
    x = [None] * K
    for i in reversed(range(K)):
        x[i] = (y[i] - sum((L[k][i] * x[k] for k in range(i + 1, K)), start=jnp.zeros_like(g[..., i]))) / L[i][i]
    return jnp.stack(x, axis=-1)


def spd_inverse_trace(H):
    """tr H^{-1} for a symmetric positive definite H: sum of squared entries of L^{-1}."""
    K = H.shape[-1]
    if K > _UNROLL_MAX_K:
        return jnp.trace(jnp.linalg.inv(H))
    L = _cholesky(H)
    total = jnp.zeros_like(H[..., 0, 0])
    # Columns of L^{-1} by forward substitution on unit vectors.
    for c in range(K):
        col = [None] * K
        for i in range(K):
            rhs = (1.0 if i == c else 0.0) - sum(
                (L[i][k] * col[k] for k in range(c, i)), start=jnp.zeros_like(H[..., 0, 0])
            )
            col[i] = rhs / L[i][i] if i >= c else jnp.zeros_like(H[..., 0, 0])
        total = total + sum(col[i] ** 2 for i in range(c, K))
    return total


def _newton(B, e_y, w, V, u0):
    dtype = w.dtype
    eps = jnp.finfo(dtype).eps
    # Lipschitz constant of grad phi: the softmax covariance has norm <= 1/2, so
    # lambda_max(Hess phi) <= 1/V + |B|_F^2 / 2.
    lip = 1.0 / V + jnp.sum(B**2) / 2

    def phi(u):
        return student_loss(e_y, _logits(B, u)) + jnp.sum((u - w) ** 2, axis=-1) / (2 * V)

    def cond(state):
        i, u, done = state
        return (i < _MAX_NEWTON) & ~done

    def body(state):
        i, u, _ = state
        H, p = _hessian(B, u, V)
        g = _BT(B, p - e_y) + (u - w) / V
        d = -spd_solve(H, g)
        dHd = -jnp.dot(g, d)  # squared Newton decrement d^T H d, >= 0
        # Full Newton step if it passes Armijo (or if we are at rounding level, where function
        # differences are meaningless and Newton converges quadratically anyway); otherwise
        # the step t = d^T H d / (lip |d|^2) <= 1, which decreases phi by at least t dHd / 2.
        phi_u = phi(u)
        full_ok = (phi(u + d) <= phi_u - 1e-4 * dHd) | (dHd <= 1e-6)
        t_safe = jnp.minimum(1.0, dHd / (lip * jnp.sum(d**2) + jnp.finfo(dtype).tiny))
        # One intermediate trial, the geometric mean of 1 and t_safe, before settling for
        # t_safe: far from the minimum t_safe can be small (~ 1 / (1 + V |B|^2)).
        t_mid = jnp.sqrt(t_safe)
        mid_ok = phi(u + t_mid * d) <= phi_u - 1e-4 * t_mid * dHd
        u_new = u + jnp.where(full_ok, 1.0, jnp.where(mid_ok, t_mid, t_safe)) * d
        # Stop once the gradient is at rounding level relative to its two terms, or once a
        # full step was tiny: Newton converges quadratically, |d_next| ~ (M V / 2) |d|^2 with
        # M ~ |B|^3 the Hessian's Lipschitz constant, so after a full step with
        # |d| <= 1e-2 sqrt(eps) (1 + |u|) the next correction is far below rounding.
        scale = 1.0 + jnp.max(jnp.abs(u - w)) / V
        tiny_step = full_ok & (jnp.max(jnp.abs(d)) <= 1e-2 * jnp.sqrt(eps) * (1.0 + jnp.max(jnp.abs(u))))
        done = (jnp.max(jnp.abs(g)) <= 16 * eps * scale) | (dHd < eps**2) | tiny_step
        return i + 1, u_new, done

    _, u, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), u0, jnp.asarray(False)))
    return u


@jax.custom_jvp
def prox(
    B: Float[Array, "q K"],
    e_y: Float[Array, " q"],
    w: Float[Array, " K"],
    V: Float[Array, ""],
    u0: Float[Array, " K"],
) -> Float[Array, " K"]:
    r"""$u_{\rm prox}(y, w, V) = \arg\min_u \ell(y, Bu) + |u-w|^2/(2V)$ for one instance.

    Args:
        B: the scenario's $(q, K)$ factor of the centred colour covariance.
        e_y: the label one-hot, shape (q,).
        w: the cavity field, shape (K,).
        V: the variance (scalar, > 0).
        u0: Newton's starting point (e.g. `w`, or a previous solution: a warm start).

    Use `jax.vmap` for batches. Differentiable in `B`, `w` and `V` by the implicit function
    theorem (custom JVP); `e_y` is a constant and `u0` gets no derivative.
    """
    return _newton(B, e_y, w, V, u0)


def _prox_jvp(primals, tangents):
    B, e_y, w, V, u0 = primals
    dB, _, dw, dV, _ = tangents
    u = prox(B, e_y, w, V, u0)
    H, _ = _hessian(B, u, V)

    # Differentiate the optimality condition G(u; B, w, V) = B^T (p(Bu) - e_y) + (u - w)/V = 0
    # with respect to the parameters, holding u fixed; then du = -H^{-1} dG.
    def G(B_, w_, V_):
        return _BT(B_, jax.nn.softmax(_logits(B_, u)) - e_y) + (u - w_) / V_

    _, dG = jax.jvp(G, (B, w, V), (dB, dw, dV))
    du = -spd_solve(H, dG)
    return u, du


prox.defjvp(_prox_jvp)


def channel_functions(
    B: Float[Array, "q K"],
    e_y: Float[Array, " q"],
    w: Float[Array, " K"],
    V: Float[Array, ""],
    u0: Float[Array, " K"] | None = None,
) -> tuple[Float[Array, " K"], Float[Array, " K"], Float[Array, ""]]:
    r"""$(u_{\rm prox}, f, \operatorname{tr}\,\partial f/\partial w)$ for one instance (see module doc);
    `u0` is Newton's starting point (default `w`)."""
    u = prox(B, e_y, w, V, w if u0 is None else u0)
    H, _ = _hessian(B, u, V)
    K = B.shape[1]
    f = (u - w) / V
    tr_Hinv = spd_inverse_trace(H)
    tr_df = (tr_Hinv / V - K) / V
    return u, f, tr_df

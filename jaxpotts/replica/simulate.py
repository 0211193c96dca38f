r"""Finite-N simulations of the replica scenario: exact samplers, the ERM fit, observables.

One seed of `simulate`:

1. teacher $J^*_j \sim \mathcal N(0, \rho/N)$, $j = 1..N$ (by default rescaled to $|J^*|^2 = \rho$);
2. $M = \mathrm{round}(\alpha N)$ training sequences $s = (s_0, s_1..s_N)$ drawn exactly:
   - ``independent``: $s_j$ i.i.d. uniform, $s_0 \sim \mathrm{softmax}_a(z^*_a(s))$,
     $z^*_a(s) = \sum_j J^*_j U(a, s_j)$;
   - ``star``: the star-graph Potts model $p(s) \propto \exp\sum_j J^*_j U(s_0, s_j)$ factorises
     given the centre, so (no Markov chain) $s_0 = a$ with probability
     $\propto \prod_j \sum_b e^{J^*_j U(a,b)}$, then each $s_j \mid s_0 = a$ independently
     $\propto e^{J^*_j U(a, s_j)}$;
3. the estimator $\hat J = \arg\min_J \frac1M\sum_\mu -\log p_J(s^\mu_0 \mid s^\mu_{-0}) +
   \frac{\lambda}{2\alpha}|J|^2$ (the scenario's objective divided by $M$), written with the
   package's own pieces on the student model `conditional_model(J, U)` (the `FactoredPotts`
   with zero fields, $J_{0j} = J_j$ and colour matrix $U$: the attention layer's MLM loss at
   site 0 with the value matrix fixed to $U$): the data term is
   `jaxpotts.losses.site_negative_log_likelihood`, the penalty is
   `jaxpotts.losses.l2_penalty` with $\lambda_J$ = `l2_from_lam(lam, alpha, U)`
   $= \lambda/(\alpha\|U\|_F^2)$ (the exact mapping between the replica ridge and the package's
   L2 convention, `jaxpotts.replica.scenario`); minimised by full-batch L-BFGS (`optax.lbfgs`,
   strictly convex objective) to a gradient norm of `gtol` times the initial one;
4. observables: $m = \hat J\cdot J^*$, $Q = |\hat J|^2$, coupling error
   $|\hat J - J^*|^2/|J^*|^2$, the training loss (data term at $\hat J$), and on `n_test`
   fresh samples the test loss, the teacher's conditional entropy and the excess loss, each
   averaged exactly over the label given the inputs
   ($\sum_y p^*(y\mid s)\,\ell(y, \hat z(s))$; lower variance than using the sampled label).

The result holds per-seed values, their mean and standard error over seeds.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..losses import l2_penalty, site_negative_log_likelihood
from ..potts import FactoredPotts
from .scenario import Scenario, l2_from_lam

__all__ = ["SimulationResult", "simulate", "sample_scenario", "fit_conditional", "conditional_model", "OBSERVABLES"]

OBSERVABLES = ("m", "Q", "test_loss", "entropy", "excess_loss", "coupling_error", "train_loss")


class SimulationResult(eqx.Module):
    """Observables of `simulate`: `mean[name]`, `stderr[name]` (standard error of the mean over
    seeds) and `per_seed[name]` (n_seeds values), for every name in `OBSERVABLES`; plus the
    run's alpha, lam, N, M, n_seeds and the largest final gradient norm of the fits."""

    alpha: float = eqx.field(static=True)
    lam: float = eqx.field(static=True)
    N: int = eqx.field(static=True)
    M: int = eqx.field(static=True)
    n_seeds: int = eqx.field(static=True)
    mean: dict
    stderr: dict
    per_seed: dict
    max_grad_norm: float = eqx.field(static=True)


# ----------------------------------------------------------------------------- sampling


def _teacher_logits(U, J_star, s):
    """z*_a(s) = sum_j J*_j U(a, s_j) for s (M, N): shape (M, q), without one-hot tensors."""
    q = U.shape[0]
    counts = jnp.stack([(s == b).astype(J_star.dtype) @ J_star for b in range(q)], axis=-1)  # (M, q)
    return counts @ U.T


def sample_scenario(scenario: Scenario, J_star: Float[Array, " N"], M: int, key: PRNGKeyArray) -> Int[Array, "M N+1"]:
    r"""M exact samples $(s_0, s_1..s_N)$ of the scenario with teacher couplings `J_star`
    (int32 sequences, site 0 first). See the module docstring for the two samplers."""
    U = jnp.asarray(scenario.U, J_star.dtype)
    q = scenario.q
    N = J_star.shape[0]
    k_centre, k_rest = jax.random.split(key)
    if scenario.kind == "independent":
        s = jax.random.randint(k_rest, (M, N), 0, q, dtype=jnp.int32)
        y = jax.random.categorical(k_centre, _teacher_logits(U, J_star, s), axis=-1).astype(jnp.int32)
        return jnp.concatenate([y[:, None], s], axis=1)
    # star: p(s_0 = a) ∝ prod_j sum_b exp(J*_j U(a,b)); then s_j | s_0 = a ∝ exp(J*_j U(a, s_j)).
    site_logits = J_star[None, :, None] * U[:, None, :]  # (a, j, b)
    log_centre = jnp.sum(jax.nn.logsumexp(site_logits, axis=-1), axis=-1)  # (q,)
    y = jax.random.categorical(k_centre, log_centre, shape=(M,)).astype(jnp.int32)
    cdf = jnp.cumsum(jax.nn.softmax(site_logits, axis=-1), axis=-1)[:, :, :-1]  # (a, j, q-1)
    u = jax.random.uniform(k_rest, (M, N), dtype=J_star.dtype)
    s = jnp.sum(u[:, :, None] > cdf[y], axis=-1).astype(jnp.int32)  # inverse-CDF sampling
    return jnp.concatenate([y[:, None], s], axis=1)


# ----------------------------------------------------------------------------- fitting


def conditional_model(J: Float[Array, " N"], U: Float[Array, "q q"]) -> FactoredPotts:
    r"""The student as a `FactoredPotts` on $L = N + 1$ sites: zero fields, $J_{0j} = J_j$ and
    every other coupling zero, colour matrix $U$. Its site-0 conditional is
    $\mathrm{softmax}_a(\sum_j J_j U(a, s_j))$; the other sites' conditionals are uniform."""
    L = J.shape[0] + 1
    q = U.shape[0]
    Jmat = jnp.zeros((L, L), J.dtype).at[0, 1:].set(J)
    return FactoredPotts(jnp.zeros((L, q), J.dtype), Jmat, U)


def _data_loss(J, U, seqs, chunk):
    """Mean site-0 negative log-likelihood over seqs, evaluated in chunks of sequences (the
    chunks bound the memory of the (chunk, q, L) gathers; their mean is the full mean)."""
    model = conditional_model(J, U)
    M = seqs.shape[0]
    n_chunks = M // chunk
    head = seqs[: n_chunks * chunk].reshape(n_chunks, chunk, -1)
    total = jnp.sum(jax.lax.map(lambda b: site_negative_log_likelihood(model, b, 0), head)) * chunk
    if M % chunk:
        total = total + site_negative_log_likelihood(model, seqs[n_chunks * chunk :], 0) * (M % chunk)
    return total / M


@eqx.filter_jit
def fit_conditional(
    seqs: Int[Array, "M L"], U: Float[Array, "q q"], alpha, lam, *, gtol: float, max_iter: int, chunk: int = 4096
):
    r"""Minimise $\frac1M\sum_\mu -\log p_J(s^\mu_0\mid s^\mu_{-0}) + \frac{\lambda}{2\alpha}|J|^2$
    by L-BFGS from $J = 0$. Returns (J_hat, final gradient norm, iterations, data loss).

    The penalty is the package's `jaxpotts.losses.l2_penalty` of `conditional_model(J, U)` at
    $\lambda_J$ = `l2_from_lam(lam, alpha, U)`, which equals $\frac{\lambda}{2\alpha}|J|^2$."""
    dtype = U.dtype
    N = seqs.shape[1] - 1
    chunk = int(min(chunk, seqs.shape[0]))

    l2 = l2_from_lam(lam, alpha, U)

    def objective(J):
        return _data_loss(J, U, seqs, chunk) + l2_penalty(conditional_model(J, U), l2)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)
    J0 = jnp.zeros(N, dtype)
    _, g0 = jax.value_and_grad(objective)(J0)
    target = gtol * jnp.maximum(jnp.linalg.norm(g0), 1.0)

    def step(carry):
        J, state, _, i = carry
        value, grad = value_and_grad(J, state=state)
        updates, state = opt.update(grad, state, J, value=value, grad=grad, value_fn=objective)
        J = optax.apply_updates(J, updates)
        return J, state, jnp.linalg.norm(optax.tree_utils.tree_get(state, "grad")), i + 1

    def cond(carry):
        _, _, gnorm, i = carry
        return (i < max_iter) & (gnorm > target)

    init = (J0, opt.init(J0), jnp.asarray(jnp.inf, dtype), jnp.asarray(0))
    J, _, _, n_iter = jax.lax.while_loop(cond, step, init)
    g = jax.grad(objective)(J)
    return J, jnp.linalg.norm(g), n_iter, _data_loss(J, U, seqs, chunk)


# ----------------------------------------------------------------------------- observables


@eqx.filter_jit
def _test_observables(U, J_hat, J_star, test_seqs):
    s = test_seqs[:, 1:]
    z_hat = _teacher_logits(U, J_hat, s)
    z_star = _teacher_logits(U, J_star, s)
    logp_star = jax.nn.log_softmax(z_star, axis=-1)
    p_star = jnp.exp(logp_star)
    logp_hat = jax.nn.log_softmax(z_hat, axis=-1)
    test_loss = -jnp.mean(jnp.sum(p_star * logp_hat, axis=-1))
    entropy = -jnp.mean(jnp.sum(p_star * logp_star, axis=-1))
    return test_loss, entropy


def simulate(
    scenario: Scenario,
    alpha: float,
    lam: float,
    *,
    N: int,
    key: PRNGKeyArray,
    n_seeds: int = 4,
    n_test: int = 20_000,
    gtol: float | None = None,
    max_iter: int = 2_000,
    normalize_teacher: bool = True,
) -> SimulationResult:
    r"""Simulate the scenario at finite N: `n_seeds` independent teachers and data sets.

    Args:
        scenario: the `Scenario` (its U, rho and kind).
        alpha: sample ratio; the training set has $M = \mathrm{round}(\alpha N)$ sequences.
        lam: ridge strength of the penalty $\frac{\lambda N}{2}|J|^2$ on the summed loss (the
            replica convention; the package's L2 strength is `l2_from_lam(lam, alpha, U)`
            $= \lambda/(\alpha\|U\|_F^2)$, `jaxpotts.replica.scenario`).
        N: number of input sites (sequences have length N + 1, site 0 is predicted).
        key: a `jax.random` key; seeds use independent sub-keys.
        n_seeds: independent repetitions (>= 2 for a standard error).
        n_test: fresh samples for the test loss and the entropy.
        gtol: L-BFGS stopping rule on the gradient norm relative to the initial one
            (default 1e-9 in float64, 1e-5 in float32).
        max_iter: L-BFGS iteration cap.
        normalize_teacher: rescale each Gaussian draw of $J^*$ to $|J^*|^2 = \rho$ exactly
            (uniform on the sphere). The theory depends on the teacher only through
            $|J^*|^2 \to \rho$; fixing it removes the $O(\rho\sqrt{2/N})$ seed-to-seed spread of
            the norm, which otherwise dominates the error bars at moderate N.

    Works in float64 when x64 is enabled, else float32.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    for name, v, lo in (("alpha", alpha, 0.0), ("lam", lam, 0.0)):
        if not (np.isfinite(v) and v > lo):
            raise ValueError(f"{name} must be finite and > 0, got {v}")
    if not (isinstance(N, (int, np.integer)) and N >= 2):
        raise ValueError(f"N must be an integer >= 2, got {N!r}")
    if not (isinstance(n_seeds, (int, np.integer)) and n_seeds >= 1):
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    M = int(round(alpha * N))
    if M < 1:
        raise ValueError(f"alpha * N = {alpha * N:g} gives no training samples")
    dtype = jnp.result_type(float)
    if gtol is None:
        gtol = 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-5
    U = jnp.asarray(scenario.U, dtype)
    rho = float(scenario.rho)
    rows = {name: [] for name in OBSERVABLES}
    max_grad = 0.0
    for seed_key in jax.random.split(key, n_seeds):
        k_teacher, k_train, k_test = jax.random.split(seed_key, 3)
        J_star = jnp.sqrt(rho / N) * jax.random.normal(k_teacher, (N,), dtype)
        if normalize_teacher:
            J_star = J_star * jnp.sqrt(rho / jnp.sum(J_star**2))
        train = sample_scenario(scenario, J_star, M, k_train)
        test = sample_scenario(scenario, J_star, n_test, k_test)
        J_hat, gnorm, _, train_loss = fit_conditional(
            train, U, jnp.asarray(alpha, dtype), jnp.asarray(lam, dtype), gtol=float(gtol), max_iter=int(max_iter)
        )
        test_loss, entropy = _test_observables(U, J_hat, J_star, test)
        m = float(J_hat @ J_star)
        Q = float(J_hat @ J_hat)
        rows["m"].append(m)
        rows["Q"].append(Q)
        rows["test_loss"].append(float(test_loss))
        rows["entropy"].append(float(entropy))
        rows["excess_loss"].append(float(test_loss - entropy))
        rows["coupling_error"].append(float(jnp.sum((J_hat - J_star) ** 2) / jnp.sum(J_star**2)))
        rows["train_loss"].append(float(train_loss))
        max_grad = max(max_grad, float(gnorm))
    per_seed = {k: np.asarray(v) for k, v in rows.items()}
    mean = {k: float(v.mean()) for k, v in per_seed.items()}
    stderr = {k: float(v.std(ddof=1) / np.sqrt(n_seeds)) if n_seeds > 1 else float("nan") for k, v in per_seed.items()}
    return SimulationResult(
        alpha=float(alpha),
        lam=float(lam),
        N=int(N),
        M=M,
        n_seeds=int(n_seeds),
        mean=mean,
        stderr=stderr,
        per_seed=per_seed,
        max_grad_norm=max_grad,
    )

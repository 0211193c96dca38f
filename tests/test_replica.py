"""Tests of the replica theory (jaxpotts.replica): scenario validation, channel integrals,
the saddle-point solver, learning curves and their agreement with independent computations.

Numerical tests run in float64 (module fixture); one test checks the float32 path.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64
from scipy import integrate, optimize

from jaxpotts import replica
from jaxpotts.replica import RESULTS, GaussHermite, MonteCarlo, Scenario


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with enable_x64(True):
        yield


def potts3(kind):
    return Scenario(3, np.eye(3), 9.0, kind)


# ----------------------------------------------------------------------------- scenario


def test_scenario_factor_and_rank():
    sc = potts3("star")
    assert sc.q == 3 and sc.K == 2
    C = np.eye(3) / 3 - np.full((3, 3), 1 / 9)
    np.testing.assert_allclose(sc.B @ sc.B.T, C, atol=1e-14)
    np.testing.assert_allclose(sc.C, C, atol=1e-14)
    # U with constant row sums but a rank-deficient centred covariance.
    U = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])
    assert Scenario(4, U, 1.0, "independent").K == 2
    assert "q=3" in repr(sc) and "star" in repr(sc)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((3, np.eye(3), 1.0, "ring"), ValueError, "kind"),
        ((2, np.eye(3), 1.0, "star"), ValueError, r"shape \(q, q\)"),
        ((1, np.eye(1), 1.0, "star"), ValueError, "q must be >= 2"),
        ((3.0, np.eye(3), 1.0, "star"), TypeError, "q must be an integer"),
        ((3, np.array([[1, 2, 0], [0, 1, 2], [2, 0, 1]]), 1.0, "star"), ValueError, "symmetric"),
        ((3, np.diag([1.0, 2.0, 3.0]), 1.0, "star"), ValueError, "constant row sums"),
        ((3, np.full((3, 3), np.nan), 1.0, "star"), ValueError, "non-finite"),
        ((3, np.ones((3, 3)), 1.0, "star"), ValueError, "zero"),
        ((3, np.eye(3), 0.0, "star"), ValueError, "rho must be finite and > 0"),
        ((3, np.eye(3), -2.0, "independent"), ValueError, "rho"),
        ((3, np.eye(3), float("inf"), "star"), ValueError, "rho"),
        ((3, np.eye(3), np.ones(2), "star"), TypeError, "rho must be a real scalar"),
    ],
)
def test_invalid_scenarios_raise_clear_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        Scenario(*args)


def test_invalid_solver_arguments():
    sc = potts3("star")
    with pytest.raises(ValueError, match="alpha"):
        replica.solve(sc, -1.0, 1.0)
    with pytest.raises(ValueError, match="lam"):
        replica.solve(sc, 1.0, float("nan"))
    with pytest.raises(ValueError, match="lam = 0 needs alpha > 0"):
        replica.solve(sc, 0.0, 0.0)
    with pytest.raises(ValueError, match="damping"):
        replica.solve(sc, 1.0, 1.0, damping=1.0)
    with pytest.raises(ValueError, match="max_steps"):
        replica.solve(sc, 1.0, 1.0, max_steps=0)
    with pytest.raises(ValueError, match="init"):
        replica.solve(sc, 1.0, 1.0, init=[1.0, 2.0])
    with pytest.raises(TypeError, match="Scenario"):
        replica.solve("star", 1.0, 1.0)
    with pytest.raises(ValueError, match="even number"):
        MonteCarlo(n=3)


# ----------------------------------------------------------------------------- proximal map


def test_prox_optimality_and_implicit_derivatives():
    from jaxpotts.replica.proximal import channel_functions, prox

    B = jnp.asarray(potts3("star").B)
    e_y = jnp.eye(3)[1]
    w, V = jnp.array([1.3, -2.0]), jnp.asarray(2.5)
    prox_j = jax.jit(prox)

    def grad_phi(u, w, V):
        return B.T @ (jax.nn.softmax(B @ u) - e_y) + (u - w) / V

    assert np.max(np.abs(grad_phi(prox_j(B, e_y, w, V, w), w, V))) < 1e-14
    # Far starts and large V (weak quadratic term): the safeguarded Newton still converges.
    for V_far, start in [(300.0, w + 50.0), (1000.0, w + jnp.array([200.0, -300.0]))]:
        u_far = prox_j(B, e_y, w, jnp.asarray(V_far), start)
        assert np.max(np.abs(grad_phi(u_far, w, V_far))) < 1e-13
    # Implicit-function derivatives against central finite differences.
    h = 1e-6
    J, dV = jax.jit(jax.jacfwd(lambda w_, V_: prox(B, e_y, w_, V_, w_), argnums=(0, 1)))(w, V)
    J_fd = np.stack(
        [(prox_j(B, e_y, w + h * d, V, w) - prox_j(B, e_y, w - h * d, V, w)) / (2 * h) for d in np.eye(2)], 1
    )
    np.testing.assert_allclose(J, J_fd, atol=1e-8)
    dV_fd = (prox_j(B, e_y, w, V + h, w) - prox_j(B, e_y, w, V - h, w)) / (2 * h)
    np.testing.assert_allclose(dV, dV_fd, atol=1e-8)
    # tr df/dw from the closed form equals the trace of the derivative of f = (u - w)/V.
    _, f, tr_df = jax.jit(channel_functions)(B, e_y, w, V)
    np.testing.assert_allclose(tr_df, (np.trace(J) - 2) / V, rtol=1e-10)
    np.testing.assert_allclose(f, (prox_j(B, e_y, w, V, w) - w) / V, rtol=1e-14)


# ----------------------------------------------------------------------------- solver


# docs/theory.md section 5 ("The prototype check"), theory columns (prototype: 40k Monte Carlo points). Monte Carlo with
# 4e4 points has relative standard errors ~ CV / 200 ~ 0.5% on these averages, and the table
# rounds to 3-4 digits: 1e-2 relative on m, Q and 2e-3 absolute on the test loss are ~2 sigma.
PROTOTYPE = [
    ("independent", 1.0, 0.891, 0.205, 1.0050),
    ("independent", 3.0, 2.075, 0.664, 0.9001),
    ("star", 1.0, 1.301, 0.286, 0.8619),
    ("star", 3.0, 2.624, 0.912, 0.6949),
]


@pytest.mark.parametrize("kind", ["independent", "star"])
def test_reproduces_prototype_table(kind):
    sc = potts3(kind)
    for k, alpha, m, Q, test_loss in PROTOTYPE:
        if k != kind:
            continue
        sol = replica.solve(sc, alpha, 1.0)
        assert sol.result == RESULTS.converged, sol.message
        assert float(sol.residual) < 1e-10
        assert abs(float(sol.m) / m - 1) < 1e-2
        assert abs(float(sol.Q) / Q - 1) < 1e-2
        assert abs(float(sol.test_loss) - test_loss) < 2e-3
        # Consistency of the observables.
        assert float(sol.excess_loss) > 0 and float(sol.train_loss) < float(sol.test_loss)
        np.testing.assert_allclose(sol.excess_loss, sol.test_loss - sol.entropy)
        np.testing.assert_allclose(sol.coupling_error, (sol.Q - 2 * sol.m + 9.0) / 9.0)
        # The returned point is a fixed point of the map to within tol.
        upd = replica.saddle_point_update(sc, alpha, 1.0, sol.m, sol.Q, sol.V)
        x = np.array([sol.m, sol.Q, sol.V])
        Fx = np.array([upd["m"], upd["Q"], upd["V"]])
        assert np.max(np.abs(Fx - x) / (1 + np.abs(x))) < 1e-10
        np.testing.assert_allclose(
            [upd["m_hat"], upd["Q_hat"], upd["V_hat"]], [sol.m_hat, sol.Q_hat, sol.V_hat], rtol=1e-12
        )


def test_result_codes_and_throw():
    sc = potts3("star")
    sol = replica.solve(sc, 3.0, 1.0, max_steps=2)
    assert sol.result == RESULTS.max_steps_reached
    assert "max_steps" in sol.message and not bool(sol.converged)
    with pytest.raises(Exception, match="max_steps"):
        replica.solve(sc, 3.0, 1.0, max_steps=2, throw=True)
    ok = replica.solve(sc, 3.0, 1.0, throw=True)
    assert ok.message.startswith("converged")
    # throw works under jit too (equinox's public runtime-error API), and for bayes_optimal.
    with pytest.raises(Exception, match="max_steps"):
        jax.block_until_ready(jax.jit(lambda a: replica.solve(sc, a, 1.0, max_steps=2, throw=True).m)(3.0))
    with pytest.raises(Exception, match="max_steps"):
        replica.bayes_optimal(sc, 3.0, max_steps=1, throw=True)
    # Integer codes (tables) and messages, from the public enumeration API only.
    from jaxpotts.replica._fixed_point import RESULT_ITEMS, result_code

    assert [int(result_code(item)) for item in RESULT_ITEMS] == [0, 1, 2, 3]
    assert int(result_code(sol.result)) == 1 and replica.result_messages()[1] == sol.message
    # No ridge and separable data (alpha = 0.5 below the separability threshold): the
    # minimiser does not exist and the order parameters run away.
    runaway = replica.solve(Scenario(2, np.eye(2), 4.0, "independent"), 0.5, 0.0, max_steps=5000)
    assert runaway.result == RESULTS.diverged and "diverged" in runaway.message
    # Warm start from the solution converges immediately.
    again = replica.solve(sc, 3.0, 1.0, init=ok)
    assert int(again.n_steps) <= 2
    np.testing.assert_allclose([again.m, again.Q], [ok.m, ok.Q], rtol=1e-9)


def test_jit_vmap_over_lambda_and_alpha():
    sc = potts3("star")
    lams = jnp.array([0.1, 1.0, 3.0])
    batched = jax.jit(jax.vmap(lambda lam: replica.solve(sc, 2.0, lam)))(lams)
    assert batched.m.shape == (3,)
    assert bool(jnp.all(batched.result == RESULTS.converged))
    for i, lam in enumerate(lams):
        single = replica.solve(sc, 2.0, float(lam))
        np.testing.assert_allclose(batched.m[i], single.m, rtol=1e-8)
        np.testing.assert_allclose(batched.test_loss[i], single.test_loss, rtol=1e-8)
    both = jax.vmap(lambda a: replica.solve(sc, a, 1.0))(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(both.m, [1.301, 2.624], rtol=1e-2)


def test_implicit_derivatives_match_finite_differences():
    sc = potts3("star")

    def test_loss(lam):
        return replica.solve(sc, 2.0, lam).test_loss

    # Reverse mode through the fixed point (implicit function theorem), against central
    # finite differences of converged solves (error ~ h^2 + tol / h, about 1e-9 relative).
    g_rev = jax.grad(test_loss)(0.5)
    h = 1e-5
    g_fd = (test_loss(0.5 + h) - test_loss(0.5 - h)) / (2 * h)
    np.testing.assert_allclose(g_rev, g_fd, rtol=1e-6)


@pytest.mark.slow
def test_forward_and_second_derivatives_through_the_fixed_point():
    sc = potts3("star")
    h = 1e-5
    d_alpha = jax.jacfwd(lambda a: replica.solve(sc, a, 0.5).m)(2.0)
    d_alpha_fd = (replica.solve(sc, 2.0 + h, 0.5).m - replica.solve(sc, 2.0 - h, 0.5).m) / (2 * h)
    np.testing.assert_allclose(d_alpha, d_alpha_fd, rtol=1e-6)

    def test_loss(lam):
        return replica.solve(sc, 2.0, lam).test_loss

    second = jax.jacfwd(jax.jacfwd(test_loss))(0.5)
    h = 1e-3
    second_fd = (test_loss(0.5 + h) - 2 * test_loss(0.5) + test_loss(0.5 - h)) / h**2
    np.testing.assert_allclose(second, second_fd, rtol=1e-4)


def test_float32_path_uses_looser_tolerance():
    with enable_x64(False):
        assert replica.default_tol() == 1e-5
        sol = replica.solve(Scenario(2, np.eye(2), 4.0, "independent"), 2.0, 1.0)
        assert sol.m.dtype == jnp.float32
        assert sol.result == RESULTS.converged
    ref = replica.solve(Scenario(2, np.eye(2), 4.0, "independent"), 2.0, 1.0)
    np.testing.assert_allclose(sol.m, ref.m, rtol=1e-4)
    np.testing.assert_allclose(sol.test_loss, ref.test_loss, rtol=1e-5)


# ----------------------------------------------------------------------------- K = 1 reference


def _scipy_reference_update(kind, U, rho, alpha, lam, m, Q, V):
    """Independent K = 1 implementation: nested scipy quadrature and scalar prox (brentq).

    For q = 2 and U = [[a, b], [b, a]] the logits differ by delta * u (delta = a - b), so
    l(0, u) = log(1 + e^{-delta u}) and l(1, u) = log(1 + e^{delta u}); b_y = +-delta/2.
    """
    delta = U[0, 0] - U[0, 1]
    b = np.array([delta / 2, -delta / 2])
    sgn = np.array([1.0, -1.0])
    sig = lambda t: 0.5 * (1 + math.tanh(t / 2))  # noqa: E731
    pdf = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    r = m / math.sqrt(Q)
    s = math.sqrt(rho - m * m / Q)
    c = sum(math.exp(rho * by**2 / 2) for by in b)

    def teacher(y, ustar):
        if kind == "independent":
            T = sig(sgn[y] * delta * ustar)
            return T, sgn[y] * delta * T * (1 - T)
        T = math.exp(b[y] * ustar) / c
        return T, b[y] * T

    def Tbar(y, xi):
        # Finite limits: beyond |t| = 40 the Gaussian weight is below e^{-800}.
        vals = [
            integrate.quad(
                lambda e, j=j: pdf(e) * teacher(y, r * xi + s * e)[j], -40, 40, epsabs=1e-13, epsrel=1e-12, limit=200
            )[0]
            for j in (0, 1)
        ]
        return vals

    def prox(y, w):
        dl = lambda u: -sgn[y] * delta * sig(-sgn[y] * delta * u)  # noqa: E731
        fn = lambda u: dl(u) + (u - w) / V  # noqa: E731
        width = V * abs(delta) + 1.0
        return optimize.brentq(fn, w - width, w + width, xtol=1e-15, rtol=1e-15)

    def integrand(xi):
        w = math.sqrt(Q) * xi
        out = np.zeros(4)
        for y in (0, 1):
            T, G = Tbar(y, xi)
            u = prox(y, w)
            f = (u - w) / V
            l2 = delta**2 * sig(delta * u) * sig(-delta * u)
            dfdw = (1.0 / (1.0 + V * l2) - 1.0) / V
            loss_w = math.log1p(math.exp(-sgn[y] * delta * w)) if -sgn[y] * delta * w < 30 else -sgn[y] * delta * w
            out += T * np.array([0.0, f * f, -dfdw, loss_w]) + np.array([G * f, 0.0, 0.0, 0.0])
        return pdf(xi) * out

    vals = integrate.quad_vec(integrand, -40, 40, epsabs=1e-12, epsrel=1e-11)[0]
    m_hat, Q_hat, V_hat = alpha * vals[:3]
    test_loss = vals[3]
    denom = lam + V_hat
    return dict(
        m=rho * m_hat / denom,
        Q=(rho * m_hat**2 + Q_hat) / denom**2,
        V=1 / denom,
        m_hat=m_hat,
        Q_hat=Q_hat,
        V_hat=V_hat,
        test_loss=test_loss,
    )


@pytest.mark.parametrize("kind", ["star", "independent"])
def test_k1_agrees_with_scipy_quadrature(kind):
    U = np.array([[1.5, -0.5], [-0.5, 1.5]])  # a non-trivial q = 2 colour matrix (delta = 2)
    rho, alpha, lam = 4.0, 1.5, 0.3
    sc = Scenario(2, U, rho, kind)
    assert sc.K == 1
    # (i) the map at an arbitrary point, (ii) the solver's fixed point is fixed for scipy too.
    sol = replica.solve(sc, alpha, lam)
    assert sol.result == RESULTS.converged
    for m, Q, V in [(0.7, 0.4, 1.1), (float(sol.m), float(sol.Q), float(sol.V))]:
        ours = replica.saddle_point_update(sc, alpha, lam, m, Q, V)
        ref = _scipy_reference_update(kind, U, rho, alpha, lam, m, Q, V)
        for key in ("m", "Q", "V", "m_hat", "Q_hat", "V_hat", "test_loss"):
            np.testing.assert_allclose(float(ours[key]), ref[key], rtol=1e-8, err_msg=key)
    ref = _scipy_reference_update(kind, U, rho, alpha, lam, float(sol.m), float(sol.Q), float(sol.V))
    np.testing.assert_allclose([ref["m"], ref["Q"], ref["V"]], [sol.m, sol.Q, sol.V], rtol=1e-8)


# ----------------------------------------------------------------------------- integrators


@pytest.mark.parametrize("kind", ["star", "independent"])
def test_gauss_hermite_and_monte_carlo_channel_integrals_agree(kind):
    """One application of the saddle-point equations with both integrators, at a typical point."""
    sc = potts3(kind)
    args = (sc, 1.0, 1.0, 1.3, 0.29, 0.84)
    gh = replica.saddle_point_update(*args)
    mc = replica.saddle_point_update(*args, integrator=MonteCarlo(2**16, seed=5))
    assert float(mc["m_hat"]) == float(
        replica.saddle_point_update(*args, integrator=MonteCarlo(2**16, seed=5))["m_hat"]
    )
    for key in ("m_hat", "Q_hat", "V_hat", "test_loss"):
        np.testing.assert_allclose(float(mc[key]), float(gh[key]), rtol=5e-3, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["star", "independent"])
def test_gauss_hermite_and_monte_carlo_agree(kind):
    sc = potts3(kind)
    gh = replica.solve(sc, 1.0, 1.0)
    gh_fine = replica.solve(sc, 1.0, 1.0, integrator=GaussHermite(64, 24))
    mc = replica.solve(sc, 1.0, 1.0, integrator=MonteCarlo(2**16, seed=3))
    mc_again = replica.solve(sc, 1.0, 1.0, integrator=MonteCarlo(2**16, seed=3))
    assert mc.result == RESULTS.converged
    # A fixed seed makes Monte Carlo deterministic.
    assert float(mc.m) == float(mc_again.m)
    # Default Gauss-Hermite is converged; Monte Carlo (2^16 antithetic points) agrees within
    # its sampling error (observed spread over seeds: <= 1.2e-3 on m, Q, losses; ~7e-3 on
    # the entropy, whose integrand has no antithetic symmetry).
    for key, rtol in [
        ("m", 4e-3),
        ("Q", 4e-3),
        ("V", 1e-3),
        ("test_loss", 3e-3),
        ("train_loss", 3e-3),
        ("entropy", 2.5e-2),
    ]:
        np.testing.assert_allclose(float(getattr(gh, key)), float(getattr(gh_fine, key)), rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(float(getattr(mc, key)), float(getattr(gh, key)), rtol=rtol, err_msg=key)


def test_default_integrator_switches_to_monte_carlo_for_large_k():
    assert isinstance(replica.default_integrator(Scenario(4, np.eye(4), 1.0, "star")), GaussHermite)
    assert isinstance(replica.default_integrator(Scenario(4, np.eye(4), 1.0, "independent")), MonteCarlo)
    assert isinstance(replica.default_integrator(Scenario(5, np.eye(5), 1.0, "star")), MonteCarlo)


# ----------------------------------------------------------------------------- curves


def test_learning_curve_table_and_writers(tmp_path):
    sc = Scenario(2, np.eye(2), 4.0, "star")
    alphas = [0.5, 1.0, 2.0, 4.0]
    lams = [0.1, 1.0]
    table = replica.learning_curve(sc, alphas, lams, progress=False)
    assert set(table) == set(replica.TABLE_COLUMNS)
    assert all(col.shape == (8,) for col in table.values())
    np.testing.assert_array_equal(table["lam"], np.repeat(lams, 4))
    np.testing.assert_array_equal(table["alpha"], np.tile(alphas, 2))
    assert table["converged"].all() and (table["residual"] < 1e-10).all()
    # Continuation gives the same points as independent cold solves.
    for i in (1, 6):
        single = replica.solve(sc, table["alpha"][i], table["lam"][i])
        np.testing.assert_allclose(table["m"][i], single.m, rtol=1e-8)
        np.testing.assert_allclose(table["test_loss"][i], single.test_loss, rtol=1e-9)
    # More data helps; more regularisation shrinks |J|.
    tl = table["test_loss"].reshape(2, 4)
    assert np.all(np.diff(tl, axis=1) < 0)
    assert np.all(table["Q"][4:] < table["Q"][:4])
    # vmap batching gives the same numbers as lax.map.
    table_v = replica.learning_curve(sc, alphas, lams, progress=False, batching="vmap", chunk=3)
    np.testing.assert_allclose(table_v["m"], table["m"], rtol=1e-8)
    # Writers.
    replica.write_table_csv(tmp_path / "curve.csv", table)
    back = replica.read_csv(tmp_path / "curve.csv")
    for key in table:
        np.testing.assert_allclose(back[key], table[key], rtol=1e-15)
    replica.write_table_json(tmp_path / "curve.json", table, scenario=repr(sc), nan=float("nan"))
    payload = json.loads((tmp_path / "curve.json").read_text())  # strict JSON: NaN written as null
    assert payload["nan"] is None
    with pytest.warns(DeprecationWarning, match="write_table_csv"):
        replica.write_csv(table, tmp_path / "old.csv")  # the previous order, for one release
    assert (tmp_path / "old.csv").read_text() == (tmp_path / "curve.csv").read_text()
    assert payload["scenario"] == repr(sc) and len(payload["columns"]["m"]) == 8
    assert replica.result_messages()[int(table["result"][0])].startswith("converged")
    with pytest.raises(ValueError, match="batching"):
        replica.learning_curve(sc, alphas, lams, batching="pmap")
    with pytest.raises(ValueError, match="alphas"):
        replica.learning_curve(sc, [], lams)


# ----------------------------------------------------------------------------- Bayes, optimal lambda


def test_bayes_optimal_star_closed_form_and_bound():
    sc = potts3("star")
    b2 = np.sum(sc.B**2, axis=1)
    pi = np.exp(9.0 * b2 / 2) / np.sum(np.exp(9.0 * b2 / 2))
    for alpha in (0.5, 3.0):
        bayes = replica.bayes_optimal(sc, alpha)
        assert bayes.result == RESULTS.converged
        q_hat = alpha * np.sum(pi * b2)
        np.testing.assert_allclose(bayes.q, 81 * q_hat / (1 + 9 * q_hat), rtol=1e-12)
        np.testing.assert_allclose(bayes.coupling_error, 1 - float(bayes.q) / 9, rtol=1e-12)
        # No estimator beats the Bayes predictive: ERM at any lambda is worse.
        for lam in (0.03, 0.3, 3.0):
            assert float(replica.solve(sc, alpha, lam).test_loss) > float(bayes.test_loss)
        assert float(bayes.excess_loss) > 0


@pytest.mark.slow
def test_optimal_lambda_by_implicit_differentiation():
    sc = Scenario(2, np.eye(2), 4.0, "independent")
    alpha = 2.0
    res = replica.optimal_lambda(sc, alpha, lam0=1.0)
    assert res.converged and not res.at_bound and abs(float(res.gradient)) < 1e-9
    lam = float(res.lam)
    best = float(res.solution.test_loss)
    for factor in (0.8, 1.25):
        assert float(replica.solve(sc, alpha, lam * factor).test_loss) > best
    # The Bayes-optimal predictor is at least as good, and (independent inputs, Gaussian
    # prior) optimally regularised ERM comes close to it.
    bayes = replica.bayes_optimal(sc, alpha)
    assert float(bayes.test_loss) <= best < float(bayes.test_loss) + 5e-3
    table = replica.bayes_curve(sc, [0.5, alpha])
    np.testing.assert_allclose(table["test_loss"][1], bayes.test_loss, rtol=1e-12)
    assert table["converged"].all()
    with pytest.raises(ValueError, match="metric"):
        replica.optimal_lambda(sc, alpha, metric="accuracy")


def test_optimal_lambda_curve_minimises_the_solved_test_loss():
    """Each row's lambda is the minimiser of the test loss of `solve` over lambda: a
    derivative-free scalar minimisation (scipy, Brent on log lambda, no implicit derivatives)
    finds the same lambda, and the solved test loss is worse at the neighbours lam * 0.9 and
    lam / 0.9. The row's observables are those of `solve` at its lambda."""
    sc = Scenario(2, np.eye(2), 4.0, "star")
    alphas = [1.0, 3.0]
    table = replica.optimal_lambda_curve(sc, alphas, progress=False)
    assert list(table["alpha"]) == alphas and table["converged"].all()
    for i, alpha in enumerate(alphas):
        lam = float(table["lam"][i])

        def loss(t, alpha=alpha):
            return float(replica.solve(sc, alpha, float(np.exp(t))).test_loss)

        brent = optimize.minimize_scalar(loss, bracket=(np.log(lam) - 1, np.log(lam) + 1), tol=1e-8)
        np.testing.assert_allclose(lam, np.exp(brent.x), rtol=1e-3)
        sol = replica.solve(sc, alpha, lam)
        for name in ("m", "Q", "test_loss", "excess_loss", "train_loss"):
            np.testing.assert_allclose(table[name][i], float(getattr(sol, name)), rtol=1e-8)
        for factor in (0.9, 1 / 0.9):
            assert float(replica.solve(sc, alpha, lam * factor).test_loss) > float(sol.test_loss)
        assert abs(table["gradient"][i]) < 1e-9


# ----------------------------------------------------------------------------- simulation


def _enumerate_scenario(scenario, J_star):
    """Exact joint probabilities of (s_0, s_1..s_N) for a tiny N, by enumeration."""
    q, N = scenario.q, len(J_star)
    states = np.array(np.meshgrid(*[np.arange(q)] * (N + 1), indexing="ij")).reshape(N + 1, -1).T
    U = scenario.U
    z = np.stack([np.sum(J_star[None, :] * U[a][states[:, 1:]], axis=1) for a in range(q)], axis=1)
    if scenario.kind == "independent":
        p_cond = np.exp(z - z.max(1, keepdims=True))
        p_cond /= p_cond.sum(1, keepdims=True)
        probs = p_cond[np.arange(len(states)), states[:, 0]] / q**N
    else:
        logw = z[np.arange(len(states)), states[:, 0]]
        probs = np.exp(logw - logw.max())
        probs /= probs.sum()
    return states, probs


@pytest.mark.parametrize("kind", ["star", "independent"])
def test_exact_samplers_match_enumeration(kind):
    U = np.array([[2.0, 0.3, -0.3], [0.3, 0.0, 1.7], [-0.3, 1.7, 0.6]])
    sc = Scenario(3, U, 4.0, kind)
    J_star = np.array([0.9, -0.6, 0.4])
    states, probs = _enumerate_scenario(sc, J_star)
    M = 200_000
    seqs = np.asarray(replica.sample_scenario(sc, jnp.asarray(J_star), M, jax.random.key(1)))
    codes = seqs @ (3 ** np.arange(3, -1, -1))
    counts = np.bincount(codes, minlength=len(probs))
    expected = M * probs[np.argsort(states @ (3 ** np.arange(3, -1, -1)))]
    chi2 = np.sum((counts - expected) ** 2 / expected)
    dof = len(probs) - 1
    # chi-square with 80 degrees of freedom: mean 80, sd 12.6; 5 sd is a 1e-6 false alarm.
    assert chi2 < dof + 5 * np.sqrt(2 * dof), chi2


def test_fit_is_the_regularised_site_likelihood_minimiser():
    from jaxpotts.losses import site_negative_log_likelihood
    from jaxpotts.replica import conditional_model as _conditional_model

    sc = potts3("independent")
    N, alpha, lam = 30, 3.0, 0.5
    J_star = jnp.sqrt(9.0 / N) * jax.random.normal(jax.random.key(2), (N,))
    seqs = replica.sample_scenario(sc, J_star, int(alpha * N), jax.random.key(3))
    U = jnp.asarray(sc.U)
    J_hat, gnorm, n_iter, train_loss = replica.fit_conditional(seqs, U, alpha, lam, gtol=1e-9, max_iter=2000)

    def objective(J):
        return site_negative_log_likelihood(_conditional_model(J, U), seqs, 0) + lam / (2 * alpha) * jnp.sum(J**2)

    assert float(jnp.linalg.norm(jax.grad(objective)(J_hat))) < 1e-9
    np.testing.assert_allclose(
        train_loss, site_negative_log_likelihood(_conditional_model(J_hat, U), seqs, 0), rtol=1e-12
    )


def test_ridge_maps_exactly_to_the_package_l2_convention():
    """The replica objective (sum_mu l + lam N / 2 |J|^2) / M, written out by hand, equals the
    package's objective pseudo_likelihood + l2_penalty of the student model at
    l2 = l2_from_lam(lam, alpha, U), up to the N log q of the student's uniform conditionals."""
    from jaxpotts import losses

    U = np.array([[2.0, 0.3, -0.3], [0.3, 0.0, 1.7], [-0.3, 1.7, 0.6]])  # |U|_F^2 = 10.5, not q
    sc = Scenario(3, U, 4.0, "independent")
    N, M, lam = 7, 20, 0.7
    alpha = M / N
    rng = np.random.default_rng(0)
    J = rng.normal(size=N) / np.sqrt(N)
    seqs = np.asarray(replica.sample_scenario(sc, jnp.asarray(rng.normal(size=N)), M, jax.random.key(4)))
    l2 = float(replica.l2_from_lam(lam, alpha, U))
    assert l2 == pytest.approx(lam / (alpha * 10.5), rel=1e-14)
    assert float(replica.lam_from_l2(l2, alpha, U)) == pytest.approx(lam, rel=1e-14)
    # By hand (numpy, loops over samples): z_a = sum_j J_j U(a, s_j), l = logsumexp(z) - z_y.
    total = 0.0
    for s in seqs:
        z = np.array([sum(J[j] * U[a, s[j + 1]] for j in range(N)) for a in range(3)])
        total += np.log(np.sum(np.exp(z))) - z[s[0]]
    by_hand = (total + lam * N / 2 * np.sum(J**2)) / M
    model = replica.conditional_model(jnp.asarray(J), jnp.asarray(U))
    package = losses.pseudo_likelihood(model, seqs) + losses.l2_penalty(model, l2) - N * np.log(3)
    np.testing.assert_allclose(float(package), by_hand, rtol=1e-13)
    # ... so the simulation's fit is the minimiser of the package objective at that l2.
    J_hat, _, _, _ = replica.fit_conditional(jnp.asarray(seqs), jnp.asarray(U), alpha, lam, gtol=1e-12, max_iter=500)

    def package_objective(J):
        m = replica.conditional_model(J, jnp.asarray(U))
        return losses.pseudo_likelihood(m, seqs) + losses.l2_penalty(m, l2)

    assert float(jnp.linalg.norm(jax.grad(package_objective)(J_hat))) < 1e-10


def test_simulate_smoke_and_validation():
    sc = potts3("independent")  # same shapes as the fit test above: one compilation
    res = replica.simulate(sc, 3.0, 1.0, N=30, key=jax.random.key(0), n_seeds=2, n_test=2000)
    assert res.M == 90 and res.n_seeds == 2
    assert set(res.mean) == set(replica.OBSERVABLES)
    assert all(np.isfinite(res.mean[k]) and res.stderr[k] >= 0 for k in res.mean)
    assert res.per_seed["m"].shape == (2,)
    # Normalised teacher: coupling error = (Q - 2 m + rho) / rho exactly.
    np.testing.assert_allclose(
        res.per_seed["coupling_error"], (res.per_seed["Q"] - 2 * res.per_seed["m"] + 9.0) / 9.0, rtol=1e-10
    )
    assert res.max_grad_norm < 1e-6
    with pytest.raises(ValueError, match="N must be"):
        replica.simulate(sc, 2.0, 1.0, N=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="lam"):
        replica.simulate(sc, 2.0, 0.0, N=10, key=jax.random.key(0))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["star", "independent"])
def test_theory_matches_simulation_at_moderate_n(kind):
    """Theory vs simulation (N = 400, 8 seeds): within 3 standard errors plus a finite-size
    allowance. The allowance (3/N relative on m and Q, 1/N absolute on the losses) is of the
    size of the O(1/N) corrections seen in the N-study of examples/replica_vs_simulation.py."""
    sc = potts3(kind)
    N = 400
    for alpha in (1.0, 4.0):
        theory = replica.solve(sc, alpha, 1.0)
        sim = replica.simulate(sc, alpha, 1.0, N=N, key=jax.random.key(7), n_seeds=8, n_test=20_000)
        for key, allowance in [
            ("m", 3 / N * float(theory.m)),
            ("Q", 3 / N * float(theory.Q)),
            ("test_loss", 1 / N),
            ("train_loss", 1 / N),
            ("entropy", 1 / N),
        ]:
            dev = abs(sim.mean[key] - float(getattr(theory, key)))
            assert dev < 3 * sim.stderr[key] + allowance, (
                kind,
                alpha,
                key,
                sim.mean[key],
                float(getattr(theory, key)),
                sim.stderr[key],
            )

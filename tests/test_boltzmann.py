"""Boltzmann-machine learning against exact enumeration (L = 4, q = 3: 81 states)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpotts import exact
from jaxpotts.boltzmann import (
    data_statistics,
    equilibration_check,
    fit_boltzmann,
    frozen_model_pearson,
    likelihood_gradient,
)
from jaxpotts.losses import l2_penalty
from jaxpotts.mutations import independent_model
from jaxpotts.potts import FactoredPotts, PottsModel, energy
from jaxpotts.sampling import sweep

L, Q = 4, 3


@pytest.fixture(scope="module")
def truth():
    key = jax.random.PRNGKey(1)
    h = 0.5 * jax.random.normal(jax.random.fold_in(key, 0), (L, Q))
    J = 0.6 * jax.random.normal(jax.random.fold_in(key, 1), (L, L, Q, Q))
    J = 0.5 * (J + J.transpose(1, 0, 3, 2)) * (1 - jnp.eye(L))[:, :, None, None]
    return PottsModel(h, J)


@pytest.fixture(scope="module")
def exact_data(truth):
    """Every state, weighted by its exact probability under `truth`: data statistics = exact marginals."""
    states, p = exact.probabilities(truth)
    return np.asarray(states), np.asarray(p, np.float64)


def _nll(model, seqs, w, l2, l2_fields):
    e = jax.vmap(lambda s: energy(model, s))(seqs)
    return exact.log_partition(model) + jnp.sum(w * e) / jnp.sum(w) + l2_penalty(model, l2, l2_fields)


def test_gradient_formula_equals_the_exact_likelihood_gradient(truth):
    """model - data statistics, pulled back, = jax.grad of log Z + mean energy + L2 (direct computation)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        seqs = jnp.asarray(rng.integers(0, Q, (30, L)))
        w = jnp.asarray(rng.uniform(0.2, 1.0, 30))
        model = PottsModel(truth.fields.astype(jnp.float64), truth.couplings.astype(jnp.float64))
        l2, l2h = 0.03, 0.02
        stats = (exact.marginals(model), exact.pair_marginals(model))
        got = likelihood_gradient(model, stats, data_statistics(seqs, Q, w), l2, l2h)
        want = jax.grad(lambda m: _nll(m, seqs, w, l2, l2h))(model)
        np.testing.assert_allclose(got.fields, want.fields, atol=1e-12)
        off = (1 - jnp.eye(L))[:, :, None, None]  # J_ii = 0 is a constraint, not a parameter
        np.testing.assert_allclose(got.couplings, off * want.couplings, atol=1e-12)
        # factored couplings J_ij U(a,b): the same gradient through the chain rule
        fm = FactoredPotts(
            model.fields, 0.5 * (model.couplings[:, :, 0, 1] + model.couplings[:, :, 0, 1].T), jnp.eye(Q)
        )
        fstats = (exact.marginals(fm), exact.pair_marginals(fm))
        got = likelihood_gradient(fm, fstats, data_statistics(seqs, Q, w), l2, l2h)
        want = jax.grad(lambda m: _nll(m, seqs, w, l2, l2h))(fm)
        np.testing.assert_allclose(got.fields, want.fields, atol=1e-12)
        np.testing.assert_allclose(got.J, (1 - jnp.eye(L)) * want.J, atol=1e-12)
        np.testing.assert_allclose(got.U, want.U, atol=1e-12)


def test_attention_layer_gradient_and_fit():
    """A factored-attention layer is trained through its joint model to_potts(symmetrize=True):
    the pulled-back gradient equals jax.grad of the exact objective, and fit_boltzmann refines it."""
    import equinox as eqx

    from jaxpotts.attention import FactoredAttention

    with jax.enable_x64(True):
        fa = FactoredAttention(L, Q, 2, 2, key=jax.random.PRNGKey(0), softmax=False, fields=True, dtype=jnp.float64)
        seqs = jnp.asarray(np.random.default_rng(0).integers(0, Q, (30, L)))
        joint = fa.to_potts(symmetrize=True)
        stats = (exact.marginals(joint), exact.pair_marginals(joint))
        got = likelihood_gradient(fa, stats, data_statistics(seqs, Q), 0.01, 0.02)

        def nll(m):
            j = m.to_potts(symmetrize=True)
            e = jax.vmap(lambda s: energy(j, s))(seqs)
            return exact.log_partition(j) + jnp.mean(e) + l2_penalty(m, 0.01, 0.02)

        want = eqx.filter_grad(nll)(fa)
        for a, b in zip(
            jax.tree_util.tree_leaves(got),
            jax.tree_util.tree_leaves(eqx.filter(want, eqx.is_inexact_array)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, atol=1e-12)
        res = fit_boltzmann(np.asarray(seqs), q=Q, key=jax.random.PRNGKey(1), start=fa, n_steps=10, chunk=10,
                            n_chains=64, check_sweeps=10, progress=False)  # fmt: skip
        assert isinstance(res.model, FactoredAttention) and np.isfinite(res.pearson)


def test_chain_gradient_estimate_is_unbiased(truth):
    """Chain statistics (N equilibrated chains) give the exact gradient within 5 standard errors
    per entry (one-hot averages of N independent chains: se^2 = p(1-p)/N)."""
    n = 4000
    f1, f2 = exact.marginals(truth), exact.pair_marginals(truth)
    seqs = jnp.asarray(np.random.default_rng(1).integers(0, Q, (50, L)))
    data = data_statistics(seqs, Q)
    chains = jax.random.randint(jax.random.PRNGKey(2), (n, L), 0, Q)
    run = jax.jit(lambda k, c: jax.lax.fori_loop(0, 50, lambda i, c: sweep(truth, jax.random.fold_in(k, i), c)[0], c))
    chains = run(jax.random.PRNGKey(3), chains)
    x = jax.nn.one_hot(chains, Q).reshape(n, L * Q)
    p2 = (x.T @ x / n).reshape(L, Q, L, Q).transpose(0, 2, 1, 3)
    p1 = x.mean(0).reshape(L, Q)
    got = likelihood_gradient(truth, (p1, p2), data)
    want = likelihood_gradient(truth, (f1, f2), data)
    se1 = np.sqrt(f1 * (1 - f1) / n) + 1e-9
    se2 = 0.5 * np.sqrt(f2 * (1 - f2) / n) + 1e-9
    assert np.max(np.abs(got.fields - want.fields) / se1) < 5
    assert np.max(np.abs(got.couplings - want.couplings) / se2) < 5


def test_learning_from_exact_statistics_matches_the_moments(truth, exact_data):
    """Data = all states weighted by the true probabilities; the learned model's exact marginals
    reproduce them (moment matching) far better than the independent-site start does."""
    states, p = exact_data
    f1, f2 = exact.marginals(truth), exact.pair_marginals(truth)
    res = fit_boltzmann(
        states,
        q=Q,
        key=jax.random.PRNGKey(0),
        weights=p,
        n_chains=2000,
        sweeps=2,
        learning_rate=0.02,
        decay=200.0,
        pseudocount=0.0,
        l2=0.0,
        n_steps=400,
        chunk=100,
        target=1.0,
        check_sweeps=20,
        progress=False,
    )
    m = res.model
    start = independent_model(states, Q, p, pseudocount=1e-6)
    err = float(jnp.max(jnp.abs(exact.pair_marginals(m) - f2)))
    err0 = float(jnp.max(jnp.abs(exact.pair_marginals(start) - f2)))
    assert float(jnp.max(jnp.abs(exact.marginals(m) - f1))) < 0.02
    assert err < 0.02 and err < err0 / 2, (err, err0)
    assert res.equilibration["equilibrated"] and not res.reached  # target 1.0 is never reached
    assert res.history["step"][-1] == 400 and len(res.history["pearson"]) == 4


def test_resume_equals_an_uninterrupted_run(exact_data, tmp_path):
    states, p = exact_data
    kw = dict(q=Q, weights=p, n_chains=64, sweeps=2, chunk=5, target=1.0, check_sweeps=10, progress=False)
    full = fit_boltzmann(states, key=jax.random.PRNGKey(4), n_steps=10, **kw)
    ck = tmp_path / "bm.ckpt"
    fit_boltzmann(states, key=jax.random.PRNGKey(4), n_steps=5, checkpoint_path=ck, **kw)
    resumed = fit_boltzmann(states, key=jax.random.PRNGKey(4), n_steps=10, checkpoint_path=ck, resume=True, **kw)
    np.testing.assert_array_equal(full.model.couplings, resumed.model.couplings)
    np.testing.assert_array_equal(full.chains, resumed.chains)
    assert resumed.history["step"] == [5, 10] and resumed.history["pearson"] == full.history["pearson"]
    with pytest.raises(ValueError, match="other settings"):
        fit_boltzmann(
            states, key=jax.random.PRNGKey(4), n_steps=10, checkpoint_path=ck, resume=True, **{**kw, "sweeps": 3}
        )


def test_equilibration_check_flags_chains_far_from_the_model(truth):
    cold = jnp.zeros((500, L), jnp.int32)  # every chain in one state: not samples of `truth`
    seqs, log_p = exact.log_probabilities(truth)
    ok_chains = jax.random.categorical(jax.random.PRNGKey(0), log_p, shape=(500,))
    ok = equilibration_check(truth, seqs[ok_chains], seqs, key=jax.random.PRNGKey(1), n_sweeps=40)
    assert ok["equilibrated"] and ok["rhat"] < 1.1
    # ferromagnet with a field favouring colour 2: chains stuck in all-0 vs fresh chains from all-2 data
    ferro = PottsModel(jnp.zeros((L, Q)).at[:, 2].set(1.0), 3.0 * (1 - jnp.eye(L))[:, :, None, None] * jnp.eye(Q))
    data = jnp.full((10, L), 2, jnp.int32)
    bad = equilibration_check(ferro, cold, data, key=jax.random.PRNGKey(1), n_sweeps=8)
    assert bad["energy_chains"] > bad["energy_fresh"] + 3  # -18 (all 0) vs -22 (all 2)
    assert not bad["equilibrated"]


def _connected_pearson(states, p_model, p_data):
    """Exact Pearson of C_ij(a,b) (i < j) of two distributions over the enumerated states."""
    from jaxpotts.statistics import pair_frequencies

    def c(p):
        f2 = np.asarray(pair_frequencies(states, Q, p), np.float64)
        f1 = np.diagonal(f2[np.arange(L), np.arange(L)], axis1=-2, axis2=-1)
        cc = f2 - f1[:, None, :, None] * f1[None, :, None, :]
        return cc[np.triu_indices(L, 1)].ravel()

    return float(np.corrcoef(c(p_model), c(p_data))[0, 1])


def test_frozen_model_pearson_against_exact_enumeration(truth, exact_data):
    """Model `other` scored against data whose statistics are `truth`'s exact marginals: the
    chain estimate (2000 exact samples of `other`, 40 sweeps, 20 snapshots) is within 0.02 of
    the exact Pearson of the two models' connected correlations (the Monte Carlo error of each
    C entry is ~0.002 here); `truth` against itself gives ~1."""
    states, p = exact_data
    other = PottsModel(truth.fields[::-1], 0.3 * truth.couplings + 0.5 * truth.couplings[::-1, ::-1])
    for model, target in ((truth, 1.0), (other, None)):
        seqs, log_p = exact.log_probabilities(model)
        chains = seqs[jax.random.categorical(jax.random.PRNGKey(2), log_p, shape=(2000,))]
        res = frozen_model_pearson(model, chains, states, p, key=jax.random.PRNGKey(3), n_sweeps=40)
        exact_r = target or _connected_pearson(states, np.exp(np.asarray(log_p, np.float64)), p)
        assert res["equilibrated"] and abs(res["pearson"] - exact_r) < 0.02, (res["pearson"], exact_r)
    assert _connected_pearson(states, p, p) == pytest.approx(1.0)
    assert exact_r < 0.9  # the two models differ: the test can fail


def test_frozen_model_pearson_is_the_score_of_the_fit(exact_data):
    """The public helper reproduces a fit's last check exactly (same chains, key, sweeps)."""
    states, p = exact_data
    key = jax.random.PRNGKey(5)
    res = fit_boltzmann(states, q=Q, key=key, weights=p, n_chains=64, sweeps=2, chunk=5, n_steps=5, target=1.0,
                        check_sweeps=10, progress=False)  # fmt: skip
    k_check = jax.random.split(key, 3)[2]
    again = frozen_model_pearson(res.model, res.chains, states, p, key=jax.random.fold_in(k_check, 5), n_sweeps=10)
    assert again["pearson"] == res.pearson and again["site_pearson"] == res.site_pearson
    assert again["rhat"] == res.equilibration["rhat"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(pseudocount=1.0), ValueError, "pseudocount"),
        (dict(optimizer="lbfgs"), ValueError, "stochastic gradients"),
        (dict(target=1.5), ValueError, "target"),
        (dict(n_chains=0), ValueError, "n_chains"),
        (dict(start="plm"), ValueError, "start must be"),
        (dict(start=PottsModel(jnp.zeros((5, Q)), jnp.zeros((5, 5, Q, Q)))), ValueError, "L=5"),
        (dict(chains=10), TypeError, "unknown option"),
    ],
)
def test_bad_input_is_refused(exact_data, kwargs, error, match):
    states, p = exact_data
    with pytest.raises(error, match=match):
        fit_boltzmann(states, q=Q, key=jax.random.PRNGKey(0), weights=p, n_steps=1, progress=False, **kwargs)


def test_profile_start_has_the_pseudocounted_data_marginals(exact_data):
    states, p = exact_data
    res = fit_boltzmann(states, q=Q, key=jax.random.PRNGKey(0), weights=p, pseudocount=0.1, n_steps=1, progress=False,
                        learning_rate=1e-9, check_sweeps=8, n_chains=16)  # fmt: skip
    want = data_statistics(states, Q, p, pseudocount=0.1)[0]
    np.testing.assert_allclose(exact.marginals(res.model), want, atol=1e-4)


PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"


@pytest.mark.slow
@pytest.mark.skipif(not (PFAM / "PF00014.fasta").exists(), reason="shared/data/pfam not present")
def test_default_recipe_reaches_the_target_on_pf00014():
    from jaxpotts.msa import read_alignment, sequence_weights

    aln = read_alignment(PFAM / "PF00014.fasta")
    w = np.asarray(sequence_weights(aln.seqs, 0.8, q=aln.alphabet.q))
    res = fit_boltzmann(
        aln.seqs, q=aln.alphabet.q, key=jax.random.PRNGKey(0), weights=w, progress=False, max_seconds=900
    )
    assert res.reached and res.pearson >= 0.95 and res.equilibration["equilibrated"]


def test_cli_fit_bm_on_a_tiny_alignment(tmp_path):
    import json

    from jaxpotts import cli
    from jaxpotts.serialization import load_model

    rng = np.random.default_rng(0)
    letters = np.array(list("-ACDEFGHIKLMNPQRSTVWY"))
    lines = []
    for m in range(40):
        s = rng.integers(0, 4, 6)
        s[3] = s[1]  # one strongly correlated pair
        lines += [f">s{m}", "".join(letters[s])]
    (tmp_path / "aln.fasta").write_text("\n".join(lines) + "\n")
    args = ["fit", "bm", str(tmp_path / "aln.fasta"), "--steps", "20", "--chains", "64", "--sweeps", "2"]
    assert cli.main([*args, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    model, hyper = load_model(tmp_path / "out" / "model.eqx")
    assert type(model).__name__ == "PottsModel" and model.L == 6 and model.q == 21 and hyper["n_chains"] == 64
    summary = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert summary["steps"] == 20 and np.isfinite(summary["pearson"]) and "rhat" in summary["equilibration"]
    # the coupled pair (1, 3) has the largest same-colour couplings J_ij(a, a) over the used colours
    J = np.asarray(model.couplings)[:, :, :4, :4]
    score = np.trace(J, axis1=2, axis2=3) / 4 - (J.sum(axis=(2, 3)) - np.trace(J, axis1=2, axis2=3)) / 12
    np.fill_diagonal(score, -np.inf)
    assert np.unravel_index(np.argmax(score), score.shape) in [(1, 3), (3, 1)]
    assert cli.main([*args, "--epochs", "3", "--out", str(tmp_path / "o2"), "--quiet"]) == 2


def test_failed_check_with_chains_on_target_backs_off(truth, exact_data, tmp_path, monkeypatch):
    """A check that fails although the chains' statistics reached the target divides the
    learning rate by 1/backoff_lr and multiplies the sweeps by backoff_sweeps, at most
    max_backoffs times; the back-offs survive a resume."""
    import jaxpotts.boltzmann as bm

    states, p = exact_data
    rules, original = [], bm._advance

    def recording(problem, *args):
        rules.append((float(problem.learning_rate), problem.sweeps))
        return original(problem, *args)

    def failing(*args):  # equilibrated but below the target: the frozen model lags its chains
        return 0.0, 1.0, dict(equilibrated=True, rhat=1.0, tau=1.0)

    monkeypatch.setattr(bm, "_advance", recording)
    monkeypatch.setattr(bm, "_check", failing)
    kw = dict(q=Q, weights=p, n_chains=256, sweeps=2, chunk=2, target=0.01, learning_rate=0.01, progress=False)
    kw.update(backoff_lr=0.5, backoff_sweeps=3, max_backoffs=2)
    ck = tmp_path / "bm.ckpt"
    # Started at the true model, the chains' statistics are on target from the first chunk.
    res = fit_boltzmann(states, key=jax.random.PRNGKey(0), start=truth, n_steps=6, checkpoint_path=ck, **kw)
    assert not res.reached and min(res.history["pearson"]) > kw["target"]
    assert res.history["backoffs"] == [2, 4]  # the third failure is past max_backoffs
    np.testing.assert_allclose([r[0] for r in rules], [0.01, 0.005, 0.0025], rtol=1e-6)
    assert [r[1] for r in rules] == [2, 6, 18]
    rules.clear()
    fit_boltzmann(states, key=jax.random.PRNGKey(0), start=truth, n_steps=8, checkpoint_path=ck, resume=True, **kw)
    assert rules == [(pytest.approx(0.0025), 18)]

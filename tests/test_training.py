"""Tests for jaxpotts.training: exact recovery (PlmDCA.jl style), determinism, resume, early
stopping, the L2 convention inside `fit`, checkpoints and input errors.

Exact recovery: enumerate a small model, fit with weights = probabilities (the population
pseudo-likelihood) and no regularisation in float64; the pseudo-likelihood is then minimised by
the true conditionals, so the couplings must come back exactly up to gauge: compare in the
zero-sum gauge, where they are unique.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpotts import losses
from jaxpotts.attention import FactoredAttention, Transformer
from jaxpotts.potts import FactoredPotts, PottsModel, zero_sum_gauge
from jaxpotts.training import History, fit, fit_plm, load_checkpoint, load_model, save_model

L, Q = 6, 3


def enumerate_probabilities(model: PottsModel) -> tuple[np.ndarray, np.ndarray]:
    """All q^L states and p(s) = exp(-E(s)) / Z, E(s) = -sum_i h_i(s_i) - sum_{i<j} J_ij(s_i, s_j)."""
    h, C = np.asarray(model.fields, np.float64), np.asarray(model.couplings, np.float64)
    n, q = h.shape
    states = np.array(list(itertools.product(range(q), repeat=n)))
    idx = np.arange(n)
    E = -h[idx, states].sum(1)
    for i, j in itertools.combinations(range(n), 2):
        E -= C[i, j, states[:, i], states[:, j]]
    logp = -E - np.log(np.sum(np.exp(-E - (-E).max()))) - (-E).max()
    return states, np.exp(logp)


def gauge_error(learned: PottsModel, true: PottsModel) -> tuple[float, float]:
    a, b = zero_sum_gauge(learned), zero_sum_gauge(true)
    return (
        float(np.max(np.abs(np.asarray(a.couplings) - np.asarray(b.couplings)))),
        float(np.max(np.abs(np.asarray(a.fields) - np.asarray(b.fields)))),
    )


def markov_sequences(rng, M, n=L, q=Q, stay=0.8) -> np.ndarray:
    """Sequences with structure: s_{i+1} = s_i with probability `stay`, else uniform."""
    s = np.empty((M, n), np.int32)
    s[:, 0] = rng.integers(0, q, M)
    for i in range(1, n):
        keep = rng.random(M) < stay
        s[:, i] = np.where(keep, s[:, i - 1], rng.integers(0, q, M))
    return s


# ----------------------------------------------------------------------------- exact recovery


def test_fit_plm_recovers_dense_couplings(x64):
    rng = np.random.default_rng(0)
    n = 4
    C = np.triu(np.ones((n, n)), 1)[:, :, None, None] * rng.normal(size=(n, n, Q, Q))
    true = PottsModel(0.5 * rng.normal(size=(n, Q)), C + C.transpose(1, 0, 3, 2))
    states, probs = enumerate_probabilities(true)
    model, hist = fit_plm(
        states, q=Q, weights=probs, l2=0.0, l2_fields=0.0, tol=1e-10, ftol=0.0, n_steps=1000, progress=False
    )
    assert isinstance(model, PottsModel) and model.couplings.dtype == jnp.float64
    assert hist.converged
    err_J, err_h = gauge_error(model, true)
    assert err_J < 1e-4 and err_h < 1e-4, (err_J, err_h)
    # the population objective at the optimum is the mean conditional entropy (times L)
    assert hist.train_loss[-1] * n == pytest.approx(float(losses.pseudo_likelihood(true, states, probs)), rel=1e-9)

    # The L2 convention inside fit is losses.l2_penalty: at the penalised optimum the gradient of
    # PL + l2_penalty vanishes (diagonal blocks excluded, they are not parameters).
    reg, _ = fit_plm(
        states, q=Q, weights=probs, l2=0.05, l2_fields=0.02, tol=1e-10, ftol=0.0, n_steps=1000, progress=False
    )
    grad = jax.grad(lambda m: losses.pseudo_likelihood(m, states, probs) + losses.l2_penalty(m, 0.05, 0.02))(reg)
    off = ~np.eye(n, dtype=bool)
    assert np.max(np.abs(np.asarray(grad.couplings)[off])) < 1e-7
    assert np.max(np.abs(np.asarray(grad.fields))) < 1e-7
    assert float(losses.coupling_norm2(reg)) < float(losses.coupling_norm2(model))
    # the start (independent-site fields or zeros) does not change the convex problem's optimum
    reg0, _ = fit_plm(
        states,
        q=Q,
        weights=probs,
        l2=0.05,
        l2_fields=0.02,
        tol=1e-10,
        ftol=0.0,
        n_steps=1000,
        progress=False,
        init="zero",
    )
    np.testing.assert_allclose(reg0.couplings, reg.couplings, atol=1e-7)


def test_free_factored_attention_recovers_factored_couplings(x64):
    rng = np.random.default_rng(1)
    n = 5
    J = np.triu(rng.normal(size=(n, n)), 1)
    U = rng.normal(size=(Q, Q))
    true = FactoredPotts(0.5 * rng.normal(size=(n, Q)), J + J.T, (U + U.T) / 2)
    states, probs = enumerate_probabilities(true.to_dense())
    init = FactoredAttention(n, Q, 1, 1, key=jax.random.PRNGKey(3), softmax=False, fields=True)
    fa, hist = fit(
        init,
        states,
        weights=probs,
        key=jax.random.PRNGKey(4),
        optimizer="lbfgs",
        n_steps=1000,
        tol=1e-10,
        progress=False,
    )
    assert isinstance(fa, FactoredAttention) and hist.converged
    err_J, err_h = gauge_error(fa.to_potts(), true.to_dense())
    assert err_J < 1e-4 and err_h < 1e-4, (err_J, err_h)


# ----------------------------------------------------------------------------- minibatch training


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    return markov_sequences(rng, 64), markov_sequences(rng, 64)


@pytest.fixture(scope="module")
def layer():
    return FactoredAttention(L, Q, 2, 4, key=jax.random.PRNGKey(0), fields=True)


def _fit_layer(layer, data, **kw):
    train, val = data
    opts = dict(
        key=jax.random.PRNGKey(5), batch_size=32, learning_rate=0.05, validation_data=(val, None), progress=False
    )
    return fit(layer, train, **(opts | kw))


def _leaves(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(model)]


def test_deterministic_resumable_and_keeps_best(layer, data, tmp_path):
    # Bitwise: the resumed and the uninterrupted run execute the same compiled chunk on the same
    # state (the checkpoint stores it bit for bit). On a GPU that also needs deterministic
    # scatter-adds in the gradient (tests/conftest.py sets --xla_gpu_deterministic_ops).
    path = tmp_path / "run.eqx"
    first, h1 = _fit_layer(layer, data, n_epochs=4, checkpoint_path=path)
    assert path.exists() and (tmp_path / "run.eqx.json").exists()
    resumed, h2 = _fit_layer(layer, data, n_epochs=8, checkpoint_path=path, resume=True)
    straight, h3 = _fit_layer(layer, data, n_epochs=8)
    for a, b in zip(_leaves(resumed), _leaves(straight), strict=False):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h2.val_loss, h3.val_loss)
    np.testing.assert_array_equal(h2.step_loss, h3.step_loss)
    np.testing.assert_array_equal(h2.step, np.arange(1, 9) * 2)  # 64 / 32 = 2 steps per epoch
    # training helps, and the returned model is the best one on the validation set
    assert h3.val_loss.min() < float(losses.mlm_loss(layer, data[1])) - 0.05
    assert h3.best_val_loss == h3.val_loss.min() and h3.best_step == h3.step[np.argmin(h3.val_loss)]
    assert float(losses.mlm_loss(straight, data[1])) == pytest.approx(h3.best_val_loss, rel=1e-5)
    # a target validation loss stops training as soon as it is reached
    _, h4 = _fit_layer(layer, data, n_epochs=8, target_loss=float(h3.val_loss[2]))
    assert h4.reached_target and not h4.stopped_early and h4.step[-1] <= h3.step[2]
    # another key gives another run
    other, _ = _fit_layer(layer, data, n_epochs=8, key=jax.random.PRNGKey(6))
    assert not all(np.array_equal(a, b) for a, b in zip(_leaves(other), _leaves(straight), strict=False))
    # a resume with different settings is refused, naming them
    with pytest.raises(ValueError, match="different learning_rate"):
        _fit_layer(layer, data, n_epochs=8, checkpoint_path=path, resume=True, learning_rate=0.01)


def test_early_stopping_on_overfitting(layer, data):
    """A 2-head layer with fields on 64 sequences overfits at a high learning rate: the validation
    loss turns up, patience runs out, and the best model is returned."""
    model, hist = _fit_layer(layer, data, n_epochs=200, patience=3, learning_rate=0.3, test_data=(data[1], None))
    assert hist.stopped_early and len(hist.step) < 200
    np.testing.assert_array_equal(hist.test_loss, hist.val_loss)  # test data is only recorded
    best = int(np.argmin(hist.val_loss))
    assert len(hist.step) == best + 1 + 3
    assert float(losses.mlm_loss(model, data[1])) == pytest.approx(hist.val_loss[best], rel=1e-5)


def test_transformer_trains_with_stochastic_masking(data):
    """It learns the Markov structure: validation loss well below log q (the best context-free
    predictor here, the colours being uniform)."""
    tr = Transformer(L, Q, 1, key=jax.random.PRNGKey(1), d_model=8, n_heads=2)
    model, hist = fit(
        tr,
        data[0],
        key=jax.random.PRNGKey(2),
        batch_size=32,
        n_epochs=30,
        learning_rate=0.01,
        loss="stochastic",
        validation_data=(data[1], None),
        progress=False,
    )
    assert isinstance(model, Transformer)
    assert hist.best_val_loss < np.log(Q) - 0.1, hist.best_val_loss


# ----------------------------------------------------------------------------- checkpoints, errors


def test_save_and_load_models(tmp_path, layer):
    dense = PottsModel(jnp.ones((3, 2)), jnp.zeros((3, 3, 2, 2)))
    tr = Transformer(4, 2, 2, key=jax.random.PRNGKey(0), d_model=4, n_heads=2, d_mlp=6)
    for i, model in enumerate([layer, tr, dense]):
        path = tmp_path / f"m{i}.eqx"
        save_model(path, model, note="x", l2=0.01)
        back, hyper = load_model(path)
        assert type(back) is type(model) and hyper == {"note": "x", "l2": 0.01}
        for a, b in zip(_leaves(back), _leaves(model), strict=False):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(tmp_path / "m0.eqx", dense)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.eqx", dense)
    h = History.empty()
    assert History.from_dict(h.to_dict()).step.shape == (0,)


def test_clear_errors(layer, data):
    train = data[0]
    with pytest.raises(ValueError, match="init must be 'profile' or 'zero'"):
        fit_plm(train, q=Q, init="random", n_steps=1, progress=False)
    with pytest.raises(ValueError, match="full batch"):
        fit(layer, train, key=jax.random.PRNGKey(0), optimizer="lbfgs", batch_size=8, n_steps=1)
    with pytest.raises(ValueError, match="deterministic loss='mlm'"):
        fit(layer, train, key=jax.random.PRNGKey(0), optimizer="lbfgs", loss="stochastic", n_steps=1)
    with pytest.raises(ValueError, match="at most one of n_steps and n_epochs"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=2, n_epochs=1)
    with pytest.raises(TypeError, match="unknown fit option"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_step=1)
    with pytest.raises(ValueError, match="empty"):
        fit(layer, np.zeros((0, L), np.int32), key=jax.random.PRNGKey(0), n_steps=1)
    with pytest.raises(ValueError, match="last dimension L=6"):
        fit(layer, np.zeros((4, L + 1), np.int32), key=jax.random.PRNGKey(0), n_steps=1)
    with pytest.raises(ValueError, match="outside 0..2"):
        fit(layer, np.full((4, L), 3), key=jax.random.PRNGKey(0), n_steps=1)
    with pytest.raises(ValueError, match="validation_data sequences contain colour"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=1, validation_data=(np.full((2, L), 5), None))
    with pytest.raises(TypeError, match="test_data must be a tuple"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=1, test_data=train)
    with pytest.raises(ValueError, match="weights must have shape"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=1, weights=np.ones(3))
    with pytest.raises(ValueError, match="validation_fraction"):
        fit(layer, train[:1], key=jax.random.PRNGKey(0), n_steps=1, validation_fraction=0.5)
    with pytest.raises(ValueError, match="loss must be one of"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=1, loss="plm")
    with pytest.raises(ValueError, match="l2 must be a finite number"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=1, l2=-1.0)
    with pytest.raises(ValueError, match="optimizer must be"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=1, optimizer="newton")
    with pytest.raises(ValueError, match="resume=True needs a checkpoint_path"):
        fit(layer, train, key=jax.random.PRNGKey(0), n_steps=1, resume=True)
    with pytest.raises(TypeError, match="FactoredAttention"):
        fit(
            FactoredPotts(jnp.zeros((L, Q)), jnp.zeros((L, L)), jnp.eye(Q)), train, key=jax.random.PRNGKey(0), n_steps=1
        )
    with pytest.raises(ValueError, match="q must be an integer"):
        fit_plm(train, q=1)


# ----------------------------------------------------------------------------- the paper's experiment, small


@pytest.mark.slow
def test_factored_attention_beats_one_layer_transformer_on_potts_data():
    """examples/attention_vs_transformer.py in miniature (L = 10, q = 3): on well-mixed samples
    of a sparse generalized Potts model, factored attention gets within 0.02 nats per site of
    the floor (the true model's loss on the same test set), and closer than a one-layer
    Transformer trained the same way."""
    from jaxpotts.potts import random_factored_potts
    from jaxpotts.sampling import sample

    n = 10
    k_model, k_train, k_test, k_fa, k_tr, k_fit = jax.random.split(jax.random.PRNGKey(1), 6)
    true = random_factored_potts(k_model, n, Q, graph="erdos_renyi", coupling_scale=1.0, field_scale=0.0)

    def draw(key, size):
        res = sample(true, key, n_chains=50, n_samples=size // 50, n_burnin=2000, thin=200, progress=False)
        assert res.rhat < 1.05
        return np.asarray(res.sequences).transpose(1, 0, 2).reshape(-1, n)

    train, test = draw(k_train, 2000), draw(k_test, 1000)
    floor = float(losses.mlm_loss(true, test))
    opts = dict(
        key=k_fit, n_steps=1500, batch_size=128, eval_every=100, validation_fraction=0.2, patience=5, progress=False
    )
    fa, _ = fit(FactoredAttention(n, Q, 1, 1, key=k_fa, softmax=False, fields=True), train, learning_rate=0.05, **opts)
    tr, _ = fit(
        Transformer(n, Q, 1, key=k_tr, d_model=16, n_heads=2), train, learning_rate=2e-3, loss="stochastic", **opts
    )
    excess_fa = float(losses.mlm_loss(fa, test)) - floor
    excess_tr = float(losses.mlm_loss(tr, test)) - floor
    assert excess_fa < 0.02, excess_fa
    assert excess_fa < excess_tr, (excess_fa, excess_tr)


def test_minibatch_train_loss_is_unbiased_when_batches_do_not_divide_the_data():
    """With the parameters frozen (SGD, learning rate 0) the recorded train loss of an epoch is
    the mean of its batch estimates; it must equal the true weighted MLM loss up to the few
    sequences that complete the last batch (900 = 7 x 128 + 4: 124 repeats, < 1% here), not be
    scaled down by 900 / 1024 as zero-weight padding would."""
    rng = np.random.default_rng(0)
    seqs = markov_sequences(rng, 900)
    w = rng.uniform(0.5, 1.5, size=900)
    layer = FactoredAttention(L, Q, 2, 2, key=jax.random.PRNGKey(1), fields=True, init_scale=1.0)
    _, hist = fit(
        layer,
        seqs,
        weights=w,
        key=jax.random.PRNGKey(2),
        optimizer="sgd",
        learning_rate=0.0,
        batch_size=128,
        n_epochs=4,
        progress=False,
    )
    true = float(losses.mlm_loss(layer, seqs, w))
    np.testing.assert_allclose(np.mean(hist.train_loss), true, rtol=0.02)


def test_plmdca_settings_resolve_the_l2_rule_and_keep_a_given_number():
    """l2="auto" (the default) -> max(0.01, 0.01 (q-1)(L-1)/M_eff); a number is used as given."""
    from jaxpotts.training import plmdca_settings

    shallow = plmdca_settings(50, 21, 100.0)
    assert shallow["l2"] == pytest.approx(0.01 * 20 * 49 / 100.0)
    assert "l2_factor" not in shallow and "l2_floor" not in shallow and shallow["init"] == "profile"
    assert plmdca_settings(50, 21, 1e5)["l2"] == 0.01
    assert plmdca_settings(50, 21, 100.0, l2=0.003)["l2"] == 0.003
    assert plmdca_settings(50, 21, 100.0, l2_floor=0.0, l2_factor=0.02)["l2"] == pytest.approx(0.02 * 20 * 49 / 100.0)
    with pytest.raises(ValueError, match="'auto'"):
        plmdca_settings(50, 21, 100.0, l2="ccmpred")


def test_fit_plm_resolves_the_rule_with_the_sum_of_the_weights():
    """M_eff is the sum of the weights: the lambda_J handed to `fit` follows it (floor included);
    invalid weights are refused before the rule reads their sum."""
    import jaxpotts.training as tr
    from jaxpotts.training import fit_plm

    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 3, size=(40, 5))
    w = np.full(40, 0.25)  # M_eff = 10: lambda_J = 0.01 * 2 * 4 / 10 = 0.008 < floor 0.01 -> 0.01
    tiny = np.full(40, 0.05)  # M_eff = 2: lambda_J = 0.04
    seen = []
    real = tr.fit

    def spy(model, s, **kw):
        seen.append(kw["l2"])
        return real(model, s, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tr, "fit", spy)
        fit_plm(seqs, q=3, weights=w, progress=False, n_steps=2)
        fit_plm(seqs, q=3, weights=tiny, progress=False, n_steps=2)
        with pytest.raises(ValueError, match="weight"):
            fit_plm(seqs, q=3, weights=np.zeros(40), progress=False, n_steps=2)
    assert seen == [0.01, pytest.approx(0.04)]


def test_fit_holds_one_lbfgs_state_between_chunks(monkeypatch):
    """After the first compiled chunk the starting state is freed: the caller of the chunk loop
    keeps no reference to it. Measured as the bytes of live JAX arrays entering each chunk: the
    first holds the starting state (parameters, gradient and the zero L-BFGS memory, whose s and
    y share one buffer: 12 parameter copies), the second the state after one step (22 copies).
    Were the starting state still alive, the second would hold 22 copies more than the first,
    not 10."""
    from jaxpotts import engine, training

    L, q = 30, 5
    seqs = np.random.default_rng(0).integers(0, q, (60, L))
    live = []
    advance = engine.advance

    def spy(*args, **kwargs):
        live.append(sum(x.nbytes for x in jax.live_arrays()))
        return advance(*args, **kwargs)

    monkeypatch.setattr(training.engine, "advance", spy)
    fit_plm(seqs, q=q, n_steps=3, eval_every=1, ftol=0.0, tol=0.0, progress=False, mesh=None)
    assert len(live) == 3
    n_bytes = (L * L * q * q + L * q) * jnp.zeros(()).dtype.itemsize
    grown = (live[1] - live[0]) / n_bytes
    assert 8 < grown < 16, grown
    assert abs(live[2] - live[1]) < n_bytes

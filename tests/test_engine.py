"""Tests for jaxpotts.engine (configs, init/step/run) and jaxpotts.defaults (one table per method).

The driver `jaxpotts.fit` is tested in test_training.py; here the pieces it is built from:
the engine's step is the optimiser's update of the objective's gradient, `run` equals that many
steps, configs validate when built, a user's optax object survives a resume, and every consumer
of the defaults reads the one table.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxpotts
from jaxpotts import defaults, engine, losses
from jaxpotts.attention import FactoredAttention
from jaxpotts.engine import FitConfig
from jaxpotts.training import fit, fit_plm, plmdca_settings

L, Q = 5, 3


@pytest.fixture(scope="module")
def seqs():
    return np.random.default_rng(0).integers(0, Q, (40, L)).astype(np.int32)


@pytest.fixture(scope="module")
def layer():
    return FactoredAttention(L, Q, 2, 3, key=jax.random.PRNGKey(1), fields=True)


def test_config_from_flat_options_round_trips_and_validates():
    cfg = FitConfig.from_options(l2=0.1, n_steps=7, optimizer="sgd", learning_rate=0.5, checkpoint_path="x")
    assert cfg.regularization.l2 == 0.1 and cfg.stopping.n_steps == 7 and cfg.checkpointing.path == "x"
    assert FitConfig.from_options(**cfg.options()) == cfg
    assert (
        dataclasses.is_dataclass(cfg) and cfg.replace(l2=0.2).regularization.l2 == 0.2 and cfg.regularization.l2 == 0.1
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.validation_fraction = 0.5
    for bad, match in [
        (dict(l2=-1), "l2 must be"),
        (dict(n_steps=0), "n_steps must be"),
        (dict(batch_size=1.5), "batch_size"),
        (dict(optimizer="lbfgs", learning_rate=0.1), "line search"),
        (dict(loss="x"), "loss must be"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(target_loss=float("nan")), "target_loss"),
        (dict(ftol=float("inf")), "ftol"),
    ]:
        with pytest.raises(ValueError, match=match):
            FitConfig.from_options(**bad)
    with pytest.raises(TypeError, match="unknown fit option"):
        FitConfig.from_options(lr=0.1)


def test_defaults_table_keys_are_fit_options():
    """Every fit entry of every method is an option `FitConfig` accepts (no drift between them)."""
    assert defaults._FIT_NAMES == set(engine._FLAT)
    for m in defaults.METHODS.values():
        fit_options = dict(m.fit)
        if m is defaults.PLM:  # l2="auto" becomes a number for an alignment (plmdca_settings)
            fit_options = {k: v for k, v in plmdca_settings(50, 21, 100.0).items() if k in m.fit}
        FitConfig.from_options(**fit_options)
    with pytest.raises(ValueError, match="unknown method"):
        defaults.method("gremlin")
    with pytest.raises(TypeError):
        defaults.PLM.fit["l2"] = 1.0  # read-only


def test_step_is_one_optimizer_update_of_the_objective(layer, seqs):
    """engine.step == optax update of grad(data term + penalty / L), computed here independently."""
    cfg = FitConfig.from_options(optimizer="sgd", learning_rate=0.3, l2=0.02, l2_fields=0.01)
    problem, state = engine.init(layer, seqs, np.ones(len(seqs), np.float32), cfg)
    new, info = engine.step(problem, state, None, jax.random.PRNGKey(0))

    def objective(model):
        return losses.mlm_loss(model, seqs) + losses.l2_penalty(model, 0.02, 0.01) / L

    value, grad = eqx.filter_value_and_grad(objective)(layer)
    expected = eqx.apply_updates(layer, jax.tree_util.tree_map(lambda g: -0.3 * g, grad))
    np.testing.assert_allclose(float(info.value), float(value), rtol=1e-5)
    got = eqx.combine(new.params, problem.static)
    for a, b in zip(
        jax.tree_util.tree_leaves(eqx.filter(got, eqx.is_inexact_array)),
        jax.tree_util.tree_leaves(eqx.filter(expected, eqx.is_inexact_array)),
        strict=False,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(new.step) == 1 and not bool(new.done)


def test_run_equals_repeated_steps_and_stops_when_done(layer, seqs):
    cfg = FitConfig.from_options(optimizer="adam", learning_rate=0.05)
    problem, state = engine.init(layer, seqs, np.ones(len(seqs), np.float32), cfg)
    key = jax.random.PRNGKey(3)
    ran, n_done, values, _ = engine.advance(problem, state, None, jnp.asarray(3, jnp.int32), key, 5)
    stepped = state
    for _ in range(3):
        stepped, _ = engine.step(problem, stepped, None, jax.random.fold_in(key, stepped.step))
    assert int(n_done) == 3 and np.isnan(np.asarray(values)[3:]).all()
    for a, b in zip(jax.tree_util.tree_leaves(ran.params), jax.tree_util.tree_leaves(stepped.params), strict=False):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    done = eqx.tree_at(lambda s: s.done, ran, jnp.asarray(True))
    _, n_after, _, _ = engine.advance(problem, done, None, jnp.asarray(3, jnp.int32), key, 5)
    assert int(n_after) == 0


def test_named_optimizers_are_one_object_so_fits_share_a_compiled_loop():
    assert engine.named_optimizer("adam") is engine.named_optimizer("adam")
    assert engine.named_optimizer("lbfgs") is engine.named_optimizer("lbfgs")


def test_learning_rate_is_a_hyperparameter_of_the_state(layer, seqs):
    """Two learning rates, one optimiser object: the state carries the rate and it is used."""
    outs = []
    for lr in (0.01, 0.1):
        model, _ = fit(
            layer, seqs, key=jax.random.PRNGKey(0), optimizer="sgd", learning_rate=lr, n_steps=1, progress=False
        )
        outs.append(model)
    delta = [
        np.asarray(a) - np.asarray(b)
        for a, b in zip(jax.tree_util.tree_leaves(outs[1]), jax.tree_util.tree_leaves(layer), strict=False)
    ]
    delta_small = [
        np.asarray(a) - np.asarray(b)
        for a, b in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(layer), strict=False)
    ]
    for big, small in zip(delta, delta_small, strict=False):
        # float32 parameters of size ~1 round (new - old) to ~1e-7, times 10 for the small step
        np.testing.assert_allclose(big, 10 * small, rtol=1e-3, atol=3e-6)
    assert max(np.abs(d).max() for d in delta) > 1e-3  # the updates are far above that rounding


def test_resume_with_an_optax_object(layer, seqs, tmp_path):
    """Regression: the checkpoint fingerprint used repr(optimizer), which holds function addresses,
    so a run with a fresh optax object of the same kind could never resume."""
    path = tmp_path / "ckpt"
    kw = dict(key=jax.random.PRNGKey(2), batch_size=10, progress=False, checkpoint_path=path)
    fit(layer, seqs, optimizer=optax.adam(0.05), n_epochs=2, **kw)
    resumed, h1 = fit(layer, seqs, optimizer=optax.adam(0.05), n_epochs=4, resume=True, **kw)
    straight, h2 = fit(
        layer, seqs, optimizer=optax.adam(0.05), n_epochs=4, key=jax.random.PRNGKey(2), batch_size=10, progress=False
    )
    for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(straight), strict=False):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(h1.step_loss, h2.step_loss)


def test_fit_without_a_length_uses_the_documented_default(seqs):
    """No n_steps / n_epochs: DEFAULT_EPOCHS epochs for Adam, DEFAULT_LBFGS_STEPS for L-BFGS (upper bound)."""
    small = FactoredAttention(L, Q, 1, 1, key=jax.random.PRNGKey(0), softmax=False)
    _, h = fit(small, seqs[:8], key=jax.random.PRNGKey(0), batch_size=4, progress=False, eval_every=50)
    assert h.step[-1] == engine.DEFAULT_EPOCHS * 2
    _, h = fit_plm(seqs, q=Q, progress=False, ftol=0.0, tol=0.0)
    assert h.step[-1] <= engine.DEFAULT_LBFGS_STEPS


def test_fit_plm_and_contacts_read_the_one_plm_table(seqs, monkeypatch):
    """Changing the table changes what fit_plm and the contacts pipeline use: no second copy."""
    from jaxpotts import contacts

    seen = {}
    real = jaxpotts.training.fit

    def spy(model, s, **kw):
        seen.update(kw)
        return real(model, s, **kw)

    monkeypatch.setattr(jaxpotts.training, "fit", spy)
    fit_plm(seqs, q=Q, progress=False, n_steps=2)
    for name in ("l2_fields", "ftol", "tol", "optimizer"):
        assert seen[name] == defaults.PLM.fit[name]
    M, n_sites = seqs.shape  # unit weights: M_eff = M
    expected = max(defaults.PLM.model["l2_floor"], defaults.PLM.model["l2_factor"] * (Q - 1) * (n_sites - 1) / M)
    assert seen["l2"] == pytest.approx(expected)
    assert contacts.PLM_DEFAULTS == dict(defaults.PLM.fit)


def test_ftol_stops_at_the_first_stalled_window(seqs):
    """L-BFGS with ftol stops once the objective fell by less than ftol (relative) over the last
    FTOL_WINDOW steps, and not before: checked on the recorded per-step objectives."""
    ftol = 1e-3
    _, full = fit_plm(seqs, q=Q, progress=False, ftol=0.0, tol=0.0, n_steps=200)
    _, h = fit_plm(seqs, q=Q, progress=False, ftol=ftol, tol=0.0, n_steps=200)
    assert h.converged and h.step[-1] < full.step[-1]
    v = np.asarray(h.step_loss, np.float64)  # v[k]: objective before step k = after step k - 1
    n, w = len(v), engine.FTOL_WINDOW
    for t in range(w, n - 1):  # after step t vs after step t - w: not stalled yet
        assert v[t - w + 1] - v[t + 1] > ftol * abs(v[t + 1]), t
    np.testing.assert_array_equal(v, np.asarray(full.step_loss)[:n])  # the same path until the stop

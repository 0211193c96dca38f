"""MCMC samplers against exact enumeration.

Statistical tests use fixed seeds; each states the probability that a *correct* sampler fails
it with a fresh seed (its false-failure rate). Independent samples come from many short chains
(one state per chain after a burn-in much longer than the mixing time), so classical
chi-square and binomial tests apply without autocorrelation corrections.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxpotts
from jaxpotts import exact
from jaxpotts.potts import (
    FactoredPotts,
    PottsModel,
    local_fields,
    random_dense_potts,
    random_factored_potts,
)
from jaxpotts.sampling import (
    Kernel,
    _chain_energies,
    _coupling_rows,
    _dense_block_sweep,
    _factored_sequential_sweep,
    _kernel_sweep,
    _sequential_sweep,
    _site_field,
    _site_field_difference,
    _sweep_uniforms,
    gibbs_kernel,
    metropolis_kernel,
    sample,
    sweep,
    sweeps,
)

ALPHA = 1e-3  # false-failure rate of each chi-square test below


def small_models():
    key = jax.random.PRNGKey(7)
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "dense": random_dense_potts(k1, 4, 3, coupling_scale=1.5, field_scale=0.7),
        "factored": random_factored_potts(k2, 4, 3, coupling_scale=1.5, field_scale=0.7),
        "factored_er_potts": random_factored_potts(
            k3, 5, 2, graph="erdos_renyi", colours="potts", mean_degree=2.0, coupling_scale=1.0
        ),
    }


def state_index(seqs, q):
    L = seqs.shape[-1]
    return (np.asarray(seqs) * q ** np.arange(L - 1, -1, -1)).sum(-1)


def independent_draws(model, key, n, method, schedule, beta=1.0, n_burnin=40):
    """n independent draws: the last state of n chains after n_burnin sweeps."""
    r = sample(
        model,
        key,
        n_chains=n,
        n_samples=1,
        n_burnin=n_burnin,
        method=method,
        schedule=schedule,
        beta=beta,
        progress=False,
    )
    return np.asarray(r.sequences[:, 0, :])


@pytest.mark.parametrize(
    "name, method, schedule",
    [
        (name, method, schedule)
        for name in ("dense", "factored")
        for method in ("gibbs", "metropolis")
        for schedule in ("sequential", "random")
    ]
    + [("factored_er_potts", "gibbs", "sequential"), ("factored_er_potts", "metropolis", "random")],
)
def test_full_distribution_chi_square(name, method, schedule):
    model = small_models()[name]
    beta = 0.8
    _, probs = exact.probabilities(model, beta)
    probs = np.asarray(probs, np.float64)
    n = 10_000
    seqs = independent_draws(model, jax.random.PRNGKey(11), n, method, schedule, beta)
    counts = np.bincount(state_index(seqs, model.q), minlength=probs.size)
    # Pool states with expected count < 5 (chi-square validity), keep the rest separate.
    expected = n * probs
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp_ = np.append(expected[~small], expected[small].sum())
    if exp_[-1] == 0:
        obs, exp_ = obs[:-1], exp_[:-1]
    chi2, p_value = stats.chisquare(obs, exp_ * obs.sum() / exp_.sum())
    assert p_value > ALPHA, f"chi2={chi2:.1f} on {obs.size - 1} dof, p={p_value:.2e}"


@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_marginals_match_enumeration(method):
    model = small_models()["dense"]
    n = 20_000
    seqs = independent_draws(model, jax.random.PRNGKey(3), n, method, "sequential")
    onehot = np.eye(model.q)[seqs]  # n, L, q
    emp1 = onehot.mean(0)
    emp2 = np.einsum("nia,njb->ijab", onehot, onehot) / n
    p1 = np.asarray(exact.marginals(model))
    p2 = np.asarray(exact.pair_marginals(model))
    # Bonferroni over all entries: each |z| < 4.5 fails with prob 6.8e-6; with ~200 entries
    # the false-failure rate of this test is < 2e-3.
    for emp, p in ((emp1, p1), (emp2, p2)):
        sd = np.sqrt(np.maximum(p * (1 - p), 1e-12) / n)
        z = np.abs(emp - p) / sd
        assert np.max(z[p > 1e-4]) < 4.5


def exact_kernel_matrix(model, site, method, beta):
    """Transition matrix of one update of `site`, from the maths (not from the code)."""
    L, q = model.L, model.q
    states = np.array(list(itertools.product(range(q), repeat=L)))
    index = {tuple(s): i for i, s in enumerate(states)}
    T = np.zeros((len(states), len(states)))
    for i, s in enumerate(states):
        phi = np.asarray(local_fields(model, jnp.asarray(s)), np.float64)[site]
        for a in range(q):
            t = s.copy()
            t[site] = a
            j = index[tuple(t)]
            if method == "gibbs":
                T[i, j] = np.exp(beta * phi[a] - np.logaddexp.reduce(beta * phi))
            elif a != s[site]:
                T[i, j] = min(1.0, np.exp(beta * (phi[a] - phi[s[site]]))) / (q - 1)
        T[i, i] += 1.0 - T[i].sum()
    return states, T


@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_one_kernel_step_transition_and_detailed_balance(kind, method):
    key = jax.random.PRNGKey(5)
    model = (random_dense_potts if kind == "dense" else random_factored_potts)(key, 2, 3, coupling_scale=1.2)
    beta, site, n = 0.9, 1, 40_000
    states, T = exact_kernel_matrix(model, site, method, beta)
    _, pi = exact.probabilities(model, beta)
    pi = np.asarray(pi, np.float64)
    # The maths: detailed balance holds exactly for the ideal kernel.
    flow = pi[:, None] * T
    np.testing.assert_allclose(flow, flow.T, rtol=1e-5, atol=1e-9)
    # The code: each row of the empirical kernel matches T (binomial z-test, Bonferroni over
    # 81 entries at |z| < 4.5: false-failure rate < 6e-4).
    step = (gibbs_kernel if method == "gibbs" else metropolis_kernel)(model, beta)
    run = jax.jit(jax.vmap(step, in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.PRNGKey(9), n)
    for i, s in enumerate(states):
        out, _ = run(keys, jnp.asarray(s, jnp.int32), site)
        emp = np.bincount(state_index(out, model.q), minlength=len(states)) / n
        sd = np.sqrt(np.maximum(T[i] * (1 - T[i]), 1e-12) / n)
        assert np.max(np.abs(emp - T[i]) / sd) < 4.5, f"row {i} ({s})"


@pytest.mark.parametrize("kind", ["dense", "factored"])
def test_site_fields_match_local_fields(kind):
    key = jax.random.PRNGKey(2)
    L, q = 7, 4
    model = (random_dense_potts if kind == "dense" else random_factored_potts)(key, L, q)
    s = jax.random.randint(key, (L,), 0, q)
    full = local_fields(model, s)
    sites = jnp.arange(L)
    np.testing.assert_allclose(jax.vmap(lambda k: _site_field(model, s, k))(sites), full, rtol=1e-5, atol=1e-5)
    for new, old in [(0, 3), (2, 2), (3, 1)]:
        diff = jax.vmap(lambda k, new=new, old=old: _site_field_difference(model, s, k, new, old))(sites)
        np.testing.assert_allclose(diff, full[:, new] - full[:, old], rtol=1e-5, atol=1e-5)


def test_same_key_same_samples_and_chunking_invariance():
    model = small_models()["factored"]
    kw = dict(n_chains=8, n_burnin=7, thin=2, method="metropolis", progress=False)
    a = sample(model, jax.random.PRNGKey(0), n_samples=20, **kw)
    b = sample(model, jax.random.PRNGKey(0), n_samples=20, **kw)
    c = sample(model, jax.random.PRNGKey(1), n_samples=20, **kw)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    assert not np.array_equal(a.sequences, c.sequences)
    # Longer runs are cut into different jitted blocks but see the same random stream.
    d = sample(model, jax.random.PRNGKey(0), n_samples=45, **kw)
    np.testing.assert_array_equal(a.sequences, d.sequences[:, :20])


def test_result_shapes_dtypes_and_diagnostics():
    model = small_models()["dense"]
    r = sample(
        model, jax.random.PRNGKey(0), n_chains=16, n_samples=200, n_burnin=10, method="metropolis", progress=False
    )
    assert r.sequences.shape == (16, 200, model.L) and r.sequences.dtype == jnp.int32
    assert r.energies.shape == (16, 200)
    np.testing.assert_allclose(r.energies[3, 5], jaxpotts.energy(model, r.sequences[3, 5]), rtol=1e-5)
    assert 0.0 < r.acceptance_rate < 1.0 and r.change_rate == r.acceptance_rate
    assert 0.95 < r.rhat < 1.05 and r.tau >= 0.5 and r.ess > 100
    g = sample(model, jax.random.PRNGKey(0), n_chains=16, n_samples=50, n_burnin=0, progress=False)
    assert g.acceptance_rate == 1.0 and 0 < g.change_rate < 1
    assert set(r.summary()) >= {"acceptance_rate", "tau", "ess", "rhat", "energy_mean"}


def test_init_states_are_used():
    # At beta = 0 Metropolis accepts everything, so use a huge beta on a ferromagnet instead:
    # a ground-state init never moves.
    L, q = 6, 3
    J = 5.0 * (np.ones((L, L)) - np.eye(L))
    model = FactoredPotts(np.zeros((L, q)), J, np.eye(q))
    init = np.full((L,), 2)
    r = sample(
        model,
        jax.random.PRNGKey(0),
        n_chains=4,
        n_samples=3,
        n_burnin=0,
        beta=20.0,
        method="metropolis",
        init=init,
        progress=False,
    )
    assert np.all(np.asarray(r.sequences) == 2)
    init2 = np.tile(np.arange(L) % q, (4, 1))
    r2 = sample(
        model,
        jax.random.PRNGKey(0),
        n_chains=4,
        n_samples=1,
        n_burnin=0,
        beta=0.0,
        method="gibbs",
        init=init2,
        progress=False,
    )
    assert r2.sequences.shape == (4, 1, L)


def test_float64_chi_square(x64):
    key = jax.random.PRNGKey(4)
    model = random_factored_potts(key, 3, 3, coupling_scale=1.5)
    assert model.fields.dtype == jnp.float64
    _, probs = exact.probabilities(model)
    n = 10_000
    seqs = independent_draws(model, jax.random.PRNGKey(1), n, "gibbs", "sequential")
    counts = np.bincount(state_index(seqs, 3), minlength=27)
    _, p_value = stats.chisquare(counts, n * np.asarray(probs))
    assert p_value > ALPHA


def test_factored_sweep_never_builds_dense_couplings():
    L, q = 12, 5
    model = random_factored_potts(jax.random.PRNGKey(0), L, q)
    states = jnp.zeros((3, L), jnp.int32)
    for method in ("gibbs", "metropolis"):
        for schedule in ("sequential", "random"):
            jaxpr = jax.make_jaxpr(
                lambda m, s, method=method, schedule=schedule: sweep(
                    m, jax.random.PRNGKey(0), s, method=method, schedule=schedule
                )
            )(model, states)
            sizes = [int(np.prod(v.aval.shape)) for eqn in _all_eqns(jaxpr.jaxpr) for v in eqn.outvars]
            assert max(sizes) < L * L * q * q / 4, "an (L, L, q, q)-sized array appeared"


@pytest.mark.parametrize("L, block", [(5, 4), (16, 4), (37, 16)])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_blocked_factored_sweep_equals_kernel_sweep(x64, L, block, method):
    # Same random numbers, fields computed two ways: identical chains in float64.
    model = random_factored_potts(jax.random.PRNGKey(L), L, 4, coupling_scale=1.0)
    states = jax.random.randint(jax.random.PRNGKey(1), (20, L), 0, 4)
    u = jax.random.uniform(jax.random.PRNGKey(3), (L, 20, 2), minval=1e-12)
    a, count_a = _factored_sequential_sweep(model, 1.0, method, u, states, block)
    b, count_b = _kernel_sweep(model, 1.0, method, u, states, jnp.arange(L), None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(count_a, count_b)


@pytest.mark.parametrize("L, block", [(5, 8), (9, 4), (16, 8), (37, 8)])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_dense_block_sweep_equals_kernel_sweep(x64, L, block, method):
    # Block-wise fields from the transposed coupling rows against the one-chain kernel's field
    # (a plain sum of J_kj(., s_j)), same random numbers: identical chains and counts in
    # float64. L = 5 < block (one block of all sites), 9 = 2 x 4 + 1 and 37 = 4 x 8 + 5 (the
    # last block overlaps the one before and must skip its sites), 16 = 2 x 8.
    model = random_dense_potts(jax.random.PRNGKey(L), L, 4, coupling_scale=1.0)
    states = jax.random.randint(jax.random.PRNGKey(1), (20, L), 0, 4, dtype=jnp.int32)
    u = jax.random.uniform(jax.random.PRNGKey(3), (L, 20, 2), minval=1e-12)
    a, count_a = _dense_block_sweep(model, _coupling_rows(model.couplings), 1.0, method, u, states.T, block)
    b, count_b = _kernel_sweep(model, 1.0, method, u, states, jnp.arange(L), None)
    np.testing.assert_array_equal(a.T, b)
    np.testing.assert_array_equal(count_a, count_b)
    assert np.mean(np.asarray(a.T) != np.asarray(states)) > 0.3  # the sweep did something
    # Through `sweep` (which takes this path for dense sequential sweeps) and `sample`.
    s1, c1 = sweep(model, jax.random.PRNGKey(5), states, method=method, kernel="xla")
    _, u1 = _sweep_uniforms(model, jax.random.PRNGKey(5), 20, method)
    s2, c2 = _kernel_sweep(model, 1.0, method, u1, states, jnp.arange(L), None)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(c1, np.sum(c2, axis=0))


@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_transposed_sequential_sweep_equals_kernel_sweep(kind, method):
    # Same rules and random numbers, states carried (L, n_chains): bit-identical chains.
    L, q = 9, 4
    model = (random_dense_potts if kind == "dense" else random_factored_potts)(jax.random.PRNGKey(L), L, q)
    states = jax.random.randint(jax.random.PRNGKey(1), (20, L), 0, q, dtype=jnp.int32)
    u = jax.random.uniform(jax.random.PRNGKey(3), (L, 20, 2), minval=1e-12)
    a, count_a = _sequential_sweep(model, 1.0, method, u, states)
    b, count_b = _kernel_sweep(model, 1.0, method, u, states, jnp.arange(L), None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(count_a, count_b)


@pytest.mark.parametrize("kind", ["dense", "factored"])
def test_sample_carries_block_layout_like_single_sweeps(kind):
    # sample() keeps the block sweeps' layouts (factored: the U columns; dense: the transposed
    # couplings and states) between sweeps; iterating `sweep` with the same per-sweep keys
    # rebuilds them every time. Both must give the same chains.
    make = random_dense_potts if kind == "dense" else random_factored_potts
    model = make(jax.random.PRNGKey(0), 13, 4, coupling_scale=1.0)
    key = jax.random.PRNGKey(3)
    for method in ("gibbs", "metropolis"):
        r = sample(model, key, n_chains=6, n_samples=1, n_burnin=4, method=method, progress=False)
        k_init, k_run = jax.random.split(key)
        states = jax.random.randint(k_init, (6, model.L), 0, model.q, dtype=jnp.int32)
        for i in range(5):
            states, _ = sweep(model, jax.random.fold_in(k_run, i), states, method=method)
        np.testing.assert_array_equal(r.sequences[:, 0], states)


@pytest.mark.parametrize("kind", ["dense", "factored"])
def test_chain_energies_match_energy(x64, kind):
    L, q = 11, 5
    model = (random_dense_potts if kind == "dense" else random_factored_potts)(jax.random.PRNGKey(4), L, q)
    states = jax.random.randint(jax.random.PRNGKey(5), (30, L), 0, q)
    expected = jax.vmap(lambda s: jaxpotts.energy(model, s))(states)
    np.testing.assert_allclose(_chain_energies(model, states), expected, rtol=1e-12, atol=1e-12)


_SHARDED_SCRIPT = """
import sys, jax, numpy as np
n_devices = int(sys.argv[2])
jax.config.update("jax_num_cpu_devices", n_devices)
from jaxpotts import sample
from jaxpotts.potts import random_factored_potts, to_dense
assert jax.default_backend() == "cpu" and len(jax.devices()) == n_devices
model = random_factored_potts(jax.random.PRNGKey(0), 13, 4, coupling_scale=1.0)
out = {}
for kind, m in (("factored", model), ("dense", to_dense(model))):
    for method in ("gibbs", "metropolis"):
        r = sample(m, jax.random.PRNGKey(3), n_chains=6, n_samples=4, n_burnin=3, method=method, progress=False)
        assert len(r.sequences.sharding.device_set) == n_devices
        out[f"{kind}_{method}"] = np.asarray(r.sequences)
        out[f"{kind}_{method}_rates"] = np.array([r.acceptance_rate, r.change_rate])
np.savez(sys.argv[1], **out)
"""


def test_chains_sharded_over_devices_give_the_same_samples(tmp_path):
    # With several (CPU) devices, sample() splits the chains over them; the random numbers do
    # not depend on the split. JAX fixes the device count at start-up, so both runs (2 CPU
    # devices and 1) are subprocesses on the CPU backend, whatever backend runs the tests.
    import os
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    runs = {}
    for n_devices in (2, 1):
        path = tmp_path / f"sharded{n_devices}.npz"
        subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, str(path), str(n_devices)], check=True, env=env)
        runs[n_devices] = np.load(path)
    for name in runs[1].files:
        if name.endswith("_rates"):
            np.testing.assert_allclose(runs[2][name], runs[1][name])
        else:
            np.testing.assert_array_equal(runs[2][name], runs[1][name])


def _all_eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in _subjaxprs(eqn):  # not jax.core.subjaxprs: it takes a whole jaxpr (jax 0.6)
            yield from _all_eqns(sub)


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
                yield v.jaxpr
            elif hasattr(v, "eqns"):
                yield v


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="hmc"), "method"),
        (dict(schedule="checkerboard"), "schedule"),
        (dict(n_chains=0), "n_chains"),
        (dict(n_samples=2.5), "n_samples"),
        (dict(n_burnin=-1), "n_burnin"),
        (dict(thin=0), "thin"),
        (dict(beta=-1.0), "beta"),
        (dict(beta=float("nan")), "beta"),
        (dict(init=np.full((4,), 3)), "outside 0..2"),
        (dict(init=np.zeros((5, 4), int)), "init must have shape"),
    ],
)
def test_invalid_arguments(kwargs, match):
    model = small_models()["dense"]
    args = dict(n_chains=2, n_samples=2, n_burnin=1, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sample(model, jax.random.PRNGKey(0), **args)


def test_non_symmetric_couplings_are_refused():
    key = jax.random.PRNGKey(0)
    L, q = 3, 2
    C = np.array(jax.random.normal(key, (L, L, q, q)))
    C[np.arange(L), np.arange(L)] = 0
    model = PottsModel(np.zeros((L, q)), C)
    with pytest.raises(ValueError, match="joint model"):
        sample(model, key, n_chains=2, n_samples=2, n_burnin=1, progress=False)
    with pytest.raises(TypeError, match="PottsModel or FactoredPotts"):
        sample("model", key, n_chains=2, n_samples=2, n_burnin=1)


def test_short_runs_have_nan_diagnostics_long_runs_finite():
    # Documented in SampleResult: fewer than 2 * MIN_DRAWS_TAU samples per chain leave tau,
    # ESS and R-hat undefined (NaN); from that length on they are finite numbers.
    from jaxpotts import diagnostics

    model = small_models()["dense"]
    n_min = 2 * diagnostics.MIN_DRAWS_TAU
    short = sample(model, jax.random.PRNGKey(0), n_chains=4, n_samples=n_min - 1, n_burnin=2, progress=False)
    assert np.isnan(short.tau) and np.isnan(short.ess) and np.isnan(short.rhat)
    assert np.isnan(short.summary()["tau"])
    assert 0.0 < short.acceptance_rate <= 1.0  # the rates are defined for any length
    long = sample(model, jax.random.PRNGKey(0), n_chains=4, n_samples=n_min, n_burnin=2, progress=False)
    assert np.isfinite(long.tau) and np.isfinite(long.ess) and np.isfinite(long.rhat)


@pytest.mark.parametrize("block", [0, 1, 5, 8])
def test_factored_block_argument_gives_the_same_chains(x64, block):
    # The block size is a static argument (no module global): any value, and 0 (the one-chain
    # kernel), gives the same chains for the same key in float64.
    model = random_factored_potts(jax.random.PRNGKey(2), 11, 4, coupling_scale=1.0)
    kw = dict(n_chains=5, n_samples=3, n_burnin=2, progress=False)
    for method in ("gibbs", "metropolis"):
        ref = sample(model, jax.random.PRNGKey(1), method=method, **kw)
        r = sample(model, jax.random.PRNGKey(1), method=method, kernel=Kernel("xla", factored_block=block), **kw)
        np.testing.assert_array_equal(r.sequences, ref.sequences)
    with pytest.raises(ValueError, match="factored_block"):
        sample(model, jax.random.PRNGKey(1), kernel=Kernel(factored_block=-1), **kw)


@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_sweeps_equals_repeated_sweep_calls(kind, method):
    # `sweeps` carries each implementation's layout between its sweeps; the chains must be those
    # of n separate `sweep` calls with the keys fold_in(key, i), also with a traced count in jit.
    L, q, n = 11, 4, 5
    model = (random_dense_potts if kind == "dense" else random_factored_potts)(jax.random.PRNGKey(L), L, q)
    states = jax.random.randint(jax.random.PRNGKey(1), (16, L), 0, q, dtype=jnp.int32)
    key = jax.random.PRNGKey(7)
    ref, total = states, np.zeros(2, np.int64)
    for i in range(n):
        ref, c = sweep(model, jax.random.fold_in(key, i), ref, method=method, kernel="xla")
        total += np.asarray(c)
    got, counts = sweeps(model, key, states, n, method=method, kernel="xla")
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(counts, total)
    jitted = jax.jit(lambda m, s, k: sweeps(m, key, s, k, method=method, kernel="xla"))
    np.testing.assert_array_equal(jitted(model, states, jnp.asarray(n))[0], ref)
    assert np.mean(np.asarray(got) != np.asarray(states)) > 0.3

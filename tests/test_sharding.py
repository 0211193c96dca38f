"""Tests for jaxpotts.sharding: losses and fits split over devices equal the one-device results.

JAX fixes the number of CPU devices when it starts, so these run in a subprocess that asks for
two CPU devices (`use_cpu_cores(2)`) before touching JAX, on the CPU backend (JAX_PLATFORMS=cpu)
whatever backend runs the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    r"""
    import jax, numpy as np
    from jaxpotts.sharding import use_cpu_cores, data_mesh, sum_over_rows
    assert use_cpu_cores(2) == 2
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jaxpotts import losses, training
    from jaxpotts.attention import FactoredAttention
    from jaxpotts.potts import random_dense_potts

    assert jax.default_backend() == "cpu"
    mesh = data_mesh()
    assert mesh.size == 2 and len(jax.devices()) == 2
    rng = np.random.default_rng(0)
    L, q, M = 6, 3, 33                      # M odd: the shards are padded with zero-weight rows
    seqs = jnp.asarray(rng.integers(0, q, (M, L)), jnp.int32)
    w = jnp.asarray(rng.uniform(size=M))
    dense = random_dense_potts(jax.random.PRNGKey(1), L, q)
    fa = FactoredAttention(L, q, 2, 3, key=jax.random.PRNGKey(2), fields=True)
    for model in (dense, fa):
        one = losses.weighted_pseudo_likelihood_sum(model, seqs, w)
        two = losses.weighted_pseudo_likelihood_sum(model, seqs, w, mesh=mesh)
        assert abs(float(one) - float(two)) < 1e-10 * abs(float(one)), (type(model).__name__, one, two)
        g1 = jax.grad(lambda m: losses.weighted_pseudo_likelihood_sum(m, seqs, w))(model)
        g2 = jax.grad(lambda m: losses.weighted_pseudo_likelihood_sum(m, seqs, w, mesh=mesh))(model)
        for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
            assert np.allclose(a, b, atol=1e-10), type(model).__name__

    # gaps as missing data (colour 0), split the same way: padded rows are weightless all-gap rows
    f = lambda m, mesh: losses.weighted_pseudo_likelihood_sum(m, seqs, w, mesh=mesh, gaps="missing")
    v1, g1 = jax.value_and_grad(lambda m: f(m, None))(dense)
    v2, g2 = jax.value_and_grad(lambda m: f(m, mesh))(dense)
    assert abs(float(v1) - float(v2)) < 1e-10 * abs(float(v1)), (v1, v2)
    assert np.allclose(g1.fields, g2.fields, atol=1e-10) and np.allclose(g1.couplings, g2.couplings, atol=1e-10)

    # sum_over_rows itself: a plain sum of squares split over the devices
    x = jnp.arange(7.0)
    f = sum_over_rows(lambda c, x: c * jnp.sum(x ** 2), mesh)
    assert float(f(2.0, x)) == 2.0 * float(jnp.sum(x ** 2))

    # fits: dense plmDCA (L-BFGS, full batch) and attention (Adam, minibatches, stochastic loss)
    m1, h1 = training.fit_plm(seqs, q=q, weights=w, n_steps=30, progress=False)
    m2, h2 = training.fit_plm(seqs, q=q, weights=w, n_steps=30, progress=False, mesh=mesh)
    assert h1.step[-1] == h2.step[-1]
    assert np.allclose(m1.couplings, m2.couplings, atol=1e-6), np.abs(m1.couplings - m2.couplings).max()
    # a fit over the mesh hands back whole arrays on one device, not shards of the L-BFGS layout
    assert all(len(x.devices()) == 1 for x in jax.tree_util.tree_leaves(m2)), [x.sharding for x in jax.tree_util.tree_leaves(m2)]

    # sampling a model whose arrays are split over the devices gives the samples of the whole model
    import jaxpotts
    from jax.sharding import NamedSharding, PartitionSpec
    joint = jaxpotts.PottsModel(m1.fields, 0.5 * (m1.couplings + m1.couplings.transpose(1, 0, 3, 2)))
    split = jax.tree_util.tree_map(lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec("data"))), joint)
    assert not split.couplings.sharding.is_fully_replicated
    for n_chains in (4, 3):   # chains split over the devices, and not (3 is not a multiple of 2)
        kw_s = dict(n_chains=n_chains, n_samples=3, n_burnin=2, progress=False)
        r1 = jaxpotts.sample(joint, jax.random.PRNGKey(5), **kw_s)
        r2 = jaxpotts.sample(split, jax.random.PRNGKey(5), **kw_s)
        assert np.array_equal(r1.sequences, r2.sequences)
    kw = dict(key=jax.random.PRNGKey(3), n_steps=20, batch_size=8, progress=False, loss="stochastic")
    a1, _ = training.fit(fa, seqs, **kw)
    a2, _ = training.fit(fa, seqs, mesh=mesh, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(a1), jax.tree_util.tree_leaves(a2)):
        assert np.allclose(a, b, atol=1e-8)

    # too late to change the device count, and a wrong mesh is refused
    try:
        use_cpu_cores(3)
    except RuntimeError as err:
        assert "before JAX runs" in str(err)
    else:
        raise AssertionError("use_cpu_cores after start-up must raise")
    from jax.sharding import Mesh
    try:
        training.fit_plm(seqs, q=q, n_steps=2, progress=False, mesh=Mesh(np.array(jax.devices()), ("x",)))
    except ValueError as err:
        assert "mesh" in str(err)
    else:
        raise AssertionError("a mesh without the data axis must be refused")

    # default_mesh: split only when each of the 2 devices gets MIN_WORK_PER_DEVICE of one evaluation
    from jaxpotts.sharding import MIN_WORK_PER_DEVICE, default_mesh, pl_work
    assert default_mesh().size == 2
    assert default_mesh(2 * MIN_WORK_PER_DEVICE).size == 2
    assert default_mesh(2 * MIN_WORK_PER_DEVICE - 1) is None
    assert default_mesh(pl_work(3617, 53, 21)) is None          # PF00014: slower when split
    assert default_mesh(pl_work(10000, 116, 21)).size == 2      # PF00763-sized: faster when split
    print("OK")
    """
)


def test_two_cpu_devices_give_the_one_device_results():
    # The CPU backend explicitly: on a GPU machine the default backend would have one device.
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")


def test_use_cpu_cores_rejects_bad_counts():
    from jaxpotts.sharding import use_cpu_cores

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            use_cpu_cores(bad)

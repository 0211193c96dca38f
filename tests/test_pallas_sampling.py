"""The fused Pallas sweep (jaxpotts._pallas_sampling) against the XLA sweeps, on CPU in Pallas
interpret mode: the same random numbers give the same chains, and its samples have the exact
marginals of a small model (enumeration). Sizes are tiny: interpret mode is slow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpotts import exact
from jaxpotts._pallas_sampling import config, default_chain_block, pallas_sweep
from jaxpotts.potts import random_dense_potts, random_factored_potts
from jaxpotts.sampling import Kernel, _resolve_kernel, _sequential_sweep, sample


def _model(kind, L, q, seed=0):
    make = random_dense_potts if kind == "dense" else random_factored_potts
    return make(jax.random.PRNGKey(seed), L, q, coupling_scale=1.0, field_scale=0.5)


@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
@pytest.mark.parametrize("L, q, n_chains, chain_block", [(7, 3, 20, 1), (5, 5, 10, 4)])
def test_pallas_sweep_equals_xla_sweep(x64, kind, method, L, q, n_chains, chain_block):
    # Same uniforms, same rules: the same chains and counts (float64: the differently ordered
    # sums cannot move a draw across a CDF step). L = 7 and 5 pad to 8 sites, q = 3 and 5 to 16
    # colours; 10 chains in blocks of 4 leave a partly padded block.
    model = _model(kind, L, q, seed=L)
    states = jax.random.randint(jax.random.PRNGKey(1), (n_chains, L), 0, q, dtype=jnp.int32)
    for sweep_index in range(2):
        u = jax.random.uniform(jax.random.PRNGKey(3 + sweep_index), (L, n_chains, 2), minval=1e-12)
        a, count_a = pallas_sweep(model, 0.9, method, u, states, chain_block=chain_block, interpret=True)
        b, count_b = _sequential_sweep(model, 0.9, method, u, states)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(count_a, count_b)
        assert not np.array_equal(a, states)  # the sweep did something
        states = a


@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_pallas_sweep_equals_xla_sweep_float32(kind, method):
    # The same in float32, for these fixed random numbers: the sums over neighbours and colours
    # are ordered differently (tree here, sequential in XLA) and agree to rounding, which moves
    # no draw across a decision boundary here.
    L, q, n = 6, 4, 32
    model = _model(kind, L, q, seed=2)
    states = jax.random.randint(jax.random.PRNGKey(4), (n, L), 0, q, dtype=jnp.int32)
    u = jax.random.uniform(jax.random.PRNGKey(5), (L, n, 2), jnp.float32, minval=1e-12)
    a, count_a = pallas_sweep(model, 1.0, method, u, states, interpret=True)
    b, count_b = _sequential_sweep(model, 1.0, method, u, states)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(count_a, count_b)


def test_sample_with_pallas_kernel_equals_xla():
    # Through sample(): burn-in, recording blocks and the counts, for the same key (float32, so
    # that on a GPU this runs the compiled Triton kernel; equal for these fixed inputs).
    for kind in ("dense", "factored"):
        model = _model(kind, 5, 3, seed=3)
        for method in ("gibbs", "metropolis"):
            kw = dict(n_chains=6, n_samples=3, n_burnin=2, method=method, progress=False)
            a = sample(model, jax.random.PRNGKey(1), kernel="pallas", **kw)
            b = sample(model, jax.random.PRNGKey(1), kernel=Kernel("xla", factored_block=0), **kw)
            np.testing.assert_array_equal(a.sequences, b.sequences)
            np.testing.assert_array_equal(a.final_states, b.final_states)
            assert (a.acceptance_rate, a.change_rate) == (b.acceptance_rate, b.change_rate)


@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_pallas_marginals_match_enumeration(kind, method):
    # Independent draws (last state of 8000 chains after 30 sweeps of an L = 4, q = 3 model)
    # against the exact one- and two-site marginals. Bonferroni over the ~170 entries with
    # p > 1e-4: each |z| < 4.5 fails with probability 6.8e-6, so a correct sampler fails this
    # test with probability < 1.2e-3 for a fresh seed.
    L, q, n = 4, 3, 8000
    model = _model(kind, L, q, seed=7)
    r = sample(
        model,
        jax.random.PRNGKey(11),
        n_chains=n,
        n_samples=1,
        n_burnin=30,
        method=method,
        kernel="pallas",
        progress=False,
    )
    seqs = np.asarray(r.sequences[:, 0])
    onehot = np.eye(q)[seqs]
    emp1 = onehot.mean(0)
    emp2 = np.einsum("nia,njb->ijab", onehot, onehot) / n
    p1 = np.asarray(exact.marginals(model), np.float64)
    p2 = np.asarray(exact.pair_marginals(model), np.float64)
    for emp, p in ((emp1, p1), (emp2, p2)):
        sd = np.sqrt(np.maximum(p * (1 - p), 1e-12) / n)
        z = np.abs(emp - p) / sd
        assert np.max(z[p > 1e-4]) < 4.5


@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_pallas_sweep_lowers_to_triton_without_a_gpu(kind, method):
    # Lowering for the CUDA platform runs Pallas' Triton lowering on the CPU: it fails on any
    # operation Triton cannot express (unrolled loops, non-power-of-two blocks, ...).
    L, q, n = 9, 21, 40
    model = _model(kind, L, q)
    f = jax.jit(lambda m, u, s: pallas_sweep(m, 1.0, method, u, s, interpret=False))
    lowered = f.trace(model, jnp.full((L, n, 2), 0.5, jnp.float32), jnp.zeros((n, L), jnp.int32))
    text = lowered.lower(lowering_platforms=("cuda",)).as_text()
    assert "__gpu$xla.gpu.triton" in text


def test_kernel_choice_and_arguments():
    on_gpu = jax.default_backend() == "gpu"
    assert _resolve_kernel("auto", "sequential") == ("pallas" if on_gpu else "xla")
    assert _resolve_kernel("auto", "random") == "xla"
    assert _resolve_kernel("auto", "sequential", sharded=True) == "xla"
    assert _resolve_kernel("auto", "sequential", dtype=jnp.float64) == "xla"
    model = _model("dense", 3, 2)
    kw = dict(n_chains=2, n_samples=1, n_burnin=0, progress=False)
    with pytest.raises(ValueError, match="kernel must be one of"):
        sample(model, jax.random.PRNGKey(0), kernel="triton", **kw)
    with pytest.raises(ValueError, match="sequential sweeps only"):
        sample(model, jax.random.PRNGKey(0), kernel="pallas", schedule="random", **kw)
    with pytest.raises(ValueError, match="chain_block"):
        config(100, chain_block=24)
    with pytest.raises(ValueError, match="u must have shape"):
        pallas_sweep(model, 1.0, "metropolis", jnp.full((3, 2, 1), 0.5), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="num_warps"):
        config(100, num_warps=3)
    assert default_chain_block(1000) == 1


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU: compiles the Triton kernel")
@pytest.mark.parametrize("kind", ["dense", "factored"])
@pytest.mark.parametrize("method", ["gibbs", "metropolis"])
def test_compiled_triton_kernel_equals_xla_sweep_on_gpu(kind, method):
    # The compiled kernel (not interpret mode) against the XLA sweep on the same GPU, q = 21
    # (padded to 32 colours), L = 37 (padded to 64 sites), 300 chains. Parameters are
    # multiples of 1/64, so every field and energy difference is exact in float32 whatever the
    # order of the sums: Metropolis must agree exactly. Gibbs draws also go through exp and the
    # cumulative sum, whose last bits may differ between Triton and XLA: a chain can then
    # leave the other where a uniform falls within ~1e-6 of a CDF step (probability ~1e-3 per
    # chain and sweep), so at most 2 of the 300 chains may differ (a wrong kernel changes most).
    L, q, n = 37, 21, 300
    model = jax.tree_util.tree_map(lambda x: jnp.round(x * 64) / 64, _model(kind, L, q, seed=5))
    states = jax.random.randint(jax.random.PRNGKey(1), (n, L), 0, q, dtype=jnp.int32)
    u = jax.random.uniform(jax.random.PRNGKey(10), (L, n, 2), jnp.float32, minval=1e-12)
    a, count_a = pallas_sweep(model, 1.0, method, u, states, interpret=False)
    b, count_b = _sequential_sweep(model, 1.0, method, u, states)
    differ = np.flatnonzero(np.any(np.asarray(a) != np.asarray(b), axis=1))
    assert not np.array_equal(a, states)
    if method == "metropolis":
        assert differ.size == 0, f"chains {differ} differ"
        np.testing.assert_array_equal(count_a, count_b)
    else:
        assert differ.size <= 2, f"{differ.size} of {n} chains differ"

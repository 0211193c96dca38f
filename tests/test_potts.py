"""Tests for jaxpotts.potts against a plain-numpy transcription of docs/theory.md section 1 (The generalized Potts model).

    E(s) = - sum_i h_i(s_i) - sum_{i<j} J_ij(s_i, s_j)
    p(s_i = a | s_-i) = softmax_a( beta [h_i(a) + sum_{j != i} J_ij(a, s_j)] )

The references below loop explicitly over sites (i < j for the energy) so they read like the
formula; models are small, so this is cheap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpotts import potts
from jaxpotts.potts import FactoredPotts, PottsModel

# The `x64` fixture (float64 enabled for one test) comes from conftest.py.


# ----------------------------------------------------------------------------- numpy reference


def dense_np(model) -> tuple[np.ndarray, np.ndarray]:
    """(h, J) as float64 numpy arrays, J_ij(a,b) = J_ij U(a,b) for factored models."""
    h = np.asarray(model.fields, dtype=np.float64)
    if isinstance(model, FactoredPotts):
        J = np.asarray(model.J, np.float64)[:, :, None, None] * np.asarray(model.U, np.float64)[None, None]
    else:
        J = np.asarray(model.couplings, dtype=np.float64)
    return h, J


def energy_ref(h, J, s) -> float:
    L = len(s)
    e = -sum(h[i, s[i]] for i in range(L))
    for i in range(L):
        for j in range(i + 1, L):
            e -= J[i, j, s[i], s[j]]
    return e


def local_fields_ref(h, J, s) -> np.ndarray:
    L, q = h.shape
    phi = h.copy()
    for i in range(L):
        for j in range(L):
            if j != i:
                phi[i, :] += J[i, j, :, s[j]]
    return phi


def log_softmax_np(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def random_sequences(seed, n, L, q):
    return np.random.default_rng(seed).integers(0, q, size=(n, L)).astype(np.int32)


# Batched, jitted versions for bulk comparisons: one compilation per model size instead of one
# per primitive (eager dispatch compiles every op separately, which dominates the test time).
# The eager, validating entry points are exercised in the tests that call them directly.
energies = jax.jit(jax.vmap(potts.energy, in_axes=(None, 0)))
fields_batch = jax.jit(jax.vmap(potts.local_fields, in_axes=(None, 0)))
logits_batch = jax.jit(jax.vmap(potts.conditional_logits, in_axes=(None, 0, None)))
gauge = jax.jit(potts.zero_sum_gauge)


# ----------------------------------------------------------------------------- models


def make_models(key=0):
    """Joint models covering every constructor option (small L, q)."""
    # One size (L, q) = (5, 3) everywhere except one: every new shape costs JAX compilations.
    k = jax.random.split(jax.random.key(key), 6)
    return {
        "dense-5x3": potts.random_dense_potts(k[0], 5, 3),
        "dense-4x2-strong": potts.random_dense_potts(k[1], 4, 2, coupling_scale=2.0),
        "factored-gaussian-random": potts.random_factored_potts(k[2], 5, 3),
        "factored-gaussian-potts": potts.random_factored_potts(k[3], 5, 3, colours="potts"),
        "factored-er-random": potts.random_factored_potts(k[4], 5, 3, graph="erdos_renyi", mean_degree=2.0),
        "factored-er-potts": potts.random_factored_potts(k[5], 5, 3, graph="erdos_renyi", colours="potts"),
    }


MODELS = make_models()
MODEL_IDS = list(MODELS)


def nonsymmetric_dense(key, L=5, q=3) -> PottsModel:
    """A set of L conditionals: J_ij(a,b) != J_ji(b,a), zero diagonal blocks."""
    k1, k2 = jax.random.split(jax.random.key(key))
    C = jax.random.normal(k1, (L, L, q, q)) * (1 - jnp.eye(L))[:, :, None, None]
    return PottsModel(jax.random.normal(k2, (L, q)), C)


def nonsymmetric_factored(key, L=5, q=3) -> FactoredPotts:
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    J = jax.random.normal(k1, (L, L)) * (1 - jnp.eye(L))
    return FactoredPotts(jax.random.normal(k2, (L, q)), J, jax.random.normal(k3, (q, q)))


# ----------------------------------------------------------------------------- energy, fields


@pytest.mark.parametrize("name", MODEL_IDS)
def test_energy_matches_reference(name):
    model = MODELS[name]
    h, J = dense_np(model)
    seqs = random_sequences(1, 6, model.L, model.q)
    ref = [energy_ref(h, J, s) for s in seqs]
    np.testing.assert_allclose(energies(model, seqs), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(potts.energy(model, jnp.asarray(seqs[0]))), ref[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_IDS)
def test_local_fields_and_conditional_logits_match_reference(name):
    model = MODELS[name]
    h, J = dense_np(model)
    beta = 0.7
    seqs = random_sequences(2, 6, model.L, model.q)
    phi = np.stack([local_fields_ref(h, J, s) for s in seqs])
    np.testing.assert_allclose(fields_batch(model, seqs), phi, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits_batch(model, seqs, beta), beta * phi, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(potts.conditional_logits(model, seqs[0], beta), beta * phi[0], rtol=1e-5, atol=1e-5)


NONSYMMETRIC = {"dense": nonsymmetric_dense(3), "factored": nonsymmetric_factored(4)}


@pytest.mark.parametrize("model", list(NONSYMMETRIC.values()), ids=list(NONSYMMETRIC))
def test_conditionals_of_nonsymmetric_models(model):
    """Non-symmetric couplings define L conditionals: logits work, energy is refused."""
    assert not potts.is_joint(model)
    h, J = dense_np(model)
    seqs = random_sequences(5, 6, model.L, model.q)
    phi = np.stack([local_fields_ref(h, J, s) for s in seqs])
    np.testing.assert_allclose(logits_batch(model, seqs, 1.3), 1.3 * phi, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(potts.conditional_logits(model, seqs[0], 1.3), 1.3 * phi[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="energy needs a joint model.*not symmetric"):
        potts.energy(model, jnp.zeros(model.L, jnp.int32))


@pytest.mark.parametrize("name", MODEL_IDS)
def test_conditional_row_ignores_own_site(name):
    model = MODELS[name]
    s = random_sequences(6, 1, model.L, model.q)[0]
    # Row i of mutant i (site i changed) must equal row i of the original.
    mutants = np.where(np.eye(model.L, dtype=bool), (s + 1) % model.q, s)
    base = logits_batch(model, s[None], 1.0)[0]
    rows = logits_batch(model, mutants, 1.0)[np.arange(model.L), np.arange(model.L)]
    np.testing.assert_allclose(rows, base, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["dense-5x3", "factored-gaussian-random"])
def test_conditionals_are_energy_differences(name):
    """log p(s_i=a|s_-i) - log p(s_i=b|s_-i) = -beta [E(s with a) - E(s with b)]."""
    model, beta = MODELS[name], 0.8
    s = random_sequences(7, 1, model.L, model.q)[0]
    logp = jax.nn.log_softmax(logits_batch(model, s[None], beta)[0], axis=-1)
    for i in range(model.L):
        e = energies(model, np.stack([np.where(np.arange(model.L) == i, a, s) for a in range(model.q)]))
        np.testing.assert_allclose(logp[i] - logp[i, 0], -beta * (e - e[0]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in MODEL_IDS if n.startswith("factored")])
def test_factored_equals_dense(name):
    model = MODELS[name]
    dense = potts.to_dense(model)
    assert isinstance(dense, PottsModel) and dense.couplings.shape == (model.L, model.L, model.q, model.q)
    np.testing.assert_allclose(model.to_dense().couplings, dense.couplings)
    seqs = random_sequences(8, 6, model.L, model.q)
    np.testing.assert_allclose(energies(model, seqs), energies(dense, seqs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fields_batch(model, seqs), fields_batch(dense, seqs), rtol=1e-5, atol=1e-5)


def test_to_dense_is_identity_on_dense():
    model = MODELS["dense-5x3"]
    assert potts.to_dense(model) is model


def test_integer_parameters_and_integral_float_sequences_are_accepted():
    model = PottsModel(np.ones((5, 3), dtype=np.int64), np.zeros((5, 5, 3, 3), dtype=np.int64))
    assert jnp.issubdtype(model.fields.dtype, jnp.floating)
    np.testing.assert_allclose(potts.energy(model, np.array([0.0, 1.0, 1.0, 2.0, 0.0])), -5.0)


# ----------------------------------------------------------------------------- gauge


def _gauge_checks(model, gauged, seqs):
    h0, J0 = dense_np(model)
    h1, J1 = dense_np(gauged)
    offdiag = ~np.eye(model.L, dtype=bool)
    np.testing.assert_allclose(J1[offdiag].sum(axis=1), 0, atol=1e-5)  # sum over a
    np.testing.assert_allclose(J1[offdiag].sum(axis=2), 0, atol=1e-5)  # sum over b
    np.testing.assert_allclose(h1.sum(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(J1[~offdiag], 0)  # still no self-coupling
    for s in seqs:
        np.testing.assert_allclose(
            log_softmax_np(local_fields_ref(h1, J1, s)), log_softmax_np(local_fields_ref(h0, J0, s)), atol=1e-5
        )
    np.testing.assert_allclose(
        jax.nn.log_softmax(fields_batch(gauged, seqs)), jax.nn.log_softmax(fields_batch(model, seqs)), atol=1e-5
    )


@pytest.mark.parametrize("name", MODEL_IDS)
def test_zero_sum_gauge(name):
    model = MODELS[name]
    gauged = potts.zero_sum_gauge(model)  # eager: the constructor re-validates the result
    assert type(gauged) is type(model)
    seqs = random_sequences(9, 6, model.L, model.q)
    _gauge_checks(model, gauged, seqs)
    # Energy differences are unchanged (the energy itself shifts by a constant).
    e0, e1 = np.asarray(energies(model, seqs)), np.asarray(energies(gauged, seqs))
    np.testing.assert_allclose(e1 - e1[0], e0 - e0[0], rtol=1e-5, atol=1e-5)
    # Idempotent.
    twice = gauge(gauged)
    np.testing.assert_allclose(dense_np(twice)[1], dense_np(gauged)[1], atol=1e-5)
    np.testing.assert_allclose(twice.fields, gauged.fields, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in MODEL_IDS if n.startswith("factored")])
def test_zero_sum_gauge_factored_matches_dense(name):
    model = MODELS[name]
    gauged = gauge(model)
    assert isinstance(gauged, FactoredPotts)
    np.testing.assert_allclose(gauged.J, model.J)  # only U and the fields change
    np.testing.assert_allclose(gauged.U.sum(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(gauged.U.sum(axis=1), 0, atol=1e-5)
    dense_gauged = gauge(potts.to_dense(model))
    np.testing.assert_allclose(potts.to_dense(gauged).couplings, dense_gauged.couplings, atol=1e-5)
    np.testing.assert_allclose(gauged.fields, dense_gauged.fields, atol=1e-5)


@pytest.mark.parametrize("model", [nonsymmetric_dense(10), nonsymmetric_factored(11)], ids=["dense", "factored"])
def test_zero_sum_gauge_keeps_conditionals_of_nonsymmetric_models(model):
    _gauge_checks(model, gauge(model), random_sequences(12, 6, model.L, model.q))


# ----------------------------------------------------------------------------- transformations


@pytest.mark.parametrize("name", ["dense-5x3", "factored-er-random"])
def test_jit_and_vmap(name):
    model = MODELS[name]
    h, J = dense_np(model)
    seqs = random_sequences(13, 6, model.L, model.q)
    e = energies(model, seqs)
    np.testing.assert_allclose(e, [energy_ref(h, J, s) for s in seqs], rtol=1e-5, atol=1e-5)
    for s, e_s in zip(seqs[:2], e[:2], strict=False):  # a Python loop of eager calls agrees with vmap
        np.testing.assert_allclose(potts.energy(model, s), e_s, rtol=1e-6)
    logits = logits_batch(model, seqs, 0.5)
    np.testing.assert_allclose(logits, [0.5 * local_fields_ref(h, J, s) for s in seqs], rtol=1e-5, atol=1e-5)
    # Models can be built inside jit (value checks are skipped on tracers).
    rebuilt = jax.jit(lambda f: potts.energy(type(model)(f, *jax.tree_util.tree_leaves(model)[1:]), seqs[0]))
    np.testing.assert_allclose(rebuilt(model.fields), e[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["dense-5x3", "factored-gaussian-random"])
def test_grad_of_energy_wrt_fields_is_minus_one_hot(name):
    model = MODELS[name]
    s = random_sequences(14, 1, model.L, model.q)[0]
    grad = jax.grad(lambda m: potts.energy(m, s))(model)
    np.testing.assert_array_equal(grad.fields, -np.eye(model.q)[s])


def test_grad_of_energy_wrt_dense_couplings():
    """The gradient is a convention on the symmetric manifold; check what is convention-free:
    it is symmetric, and its pairing with any symmetric zero-diagonal dJ is -sum_{i<j} dJ_ij(s_i,s_j)."""
    model = MODELS["dense-5x3"]
    L, q = model.L, model.q
    s = random_sequences(15, 1, L, q)[0]
    grad = np.asarray(jax.grad(lambda C: potts.energy(PottsModel(model.fields, C), s))(model.couplings))
    np.testing.assert_allclose(grad, grad.transpose(1, 0, 3, 2))
    rng = np.random.default_rng(16)
    for _ in range(3):
        dJ = rng.normal(size=(L, L, q, q)) * (1 - np.eye(L))[:, :, None, None]
        dJ = dJ + dJ.transpose(1, 0, 3, 2)
        expected = -sum(dJ[i, j, s[i], s[j]] for i in range(L) for j in range(i + 1, L))
        np.testing.assert_allclose(np.sum(grad * dJ), expected, rtol=1e-5)
    # Off the diagonal blocks, it is the symmetric split -1/2 [s_i=a][s_j=b] of the reference -1.
    x = np.eye(q)[s]
    ref = -0.5 * np.einsum("ia,jb->ijab", x, x) * (1 - np.eye(L))[:, :, None, None]
    offdiag = ~np.eye(L, dtype=bool)
    np.testing.assert_allclose(grad[offdiag], ref[offdiag])


def test_grad_of_energy_wrt_factored_parameters():
    """dE/dJ_ij and dE/dU(a,b) against the numpy reference, along symmetric directions."""
    model = MODELS["factored-gaussian-random"]
    L, q = model.L, model.q
    s = random_sequences(17, 1, L, q)[0]
    grad = jax.grad(lambda m: potts.energy(m, s))(model)
    U, J = np.asarray(model.U, np.float64), np.asarray(model.J, np.float64)
    # E is linear in J: dE/dJ_ij for a symmetric direction gives -sum_{i<j} dJ_ij U(s_i, s_j).
    dJ = np.triu(np.random.default_rng(18).normal(size=(L, L)), 1)
    dJ = dJ + dJ.T
    expected = -sum(dJ[i, j] * U[s[i], s[j]] for i in range(L) for j in range(i + 1, L))
    np.testing.assert_allclose(np.sum(np.asarray(grad.J) * dJ), expected, rtol=1e-5)
    # dE/dU(a,b) = -sum_{i<j} J_ij [s_i=a][s_j=b], symmetrised over (a,b) by U's symmetry.
    gU = np.zeros((q, q))
    for i in range(L):
        for j in range(i + 1, L):
            gU[s[i], s[j]] -= J[i, j]
    np.testing.assert_allclose(grad.U + grad.U.T, gU + gU.T, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- float64


def _as_float64(model):
    """The same model with float64 parameters (built from numpy, so no f64 random compilations)."""
    leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(model)]
    return type(model)(*leaves)


@pytest.mark.parametrize("which", ["dense", "factored", "nonsymmetric"])
def test_float64_precision(x64, which):
    source = {"dense": MODELS["dense-5x3"], "factored": MODELS["factored-gaussian-random"]}.get(which)
    model = _as_float64(NONSYMMETRIC["factored"] if source is None else source)
    assert model.fields.dtype == jnp.float64
    h, J = dense_np(model)
    seqs = random_sequences(21, 6, model.L, model.q)
    phi = fields_batch(model, seqs)
    assert phi.dtype == jnp.float64
    np.testing.assert_allclose(phi, [local_fields_ref(h, J, s) for s in seqs], rtol=1e-12, atol=1e-12)
    if which == "nonsymmetric":
        return
    e = energies(model, seqs)
    assert e.dtype == jnp.float64
    np.testing.assert_allclose(e, [energy_ref(h, J, s) for s in seqs], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(energies(potts.to_dense(model), seqs), e, rtol=1e-12, atol=1e-12)
    gauged = gauge(model)
    assert gauged.fields.dtype == jnp.float64
    e1 = np.asarray(energies(gauged, seqs))
    np.testing.assert_allclose(e1 - e1[0], e - e[0], rtol=1e-12, atol=1e-12)
    h1, J1 = dense_np(gauged)
    np.testing.assert_allclose(J1.sum(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(J1.sum(axis=3), 0, atol=1e-12)


def test_float32_by_default():
    model = MODELS["dense-5x3"]
    assert model.fields.dtype == jnp.float32 and model.couplings.dtype == jnp.float32
    assert potts.energy(model, np.zeros(5, np.int32)).dtype == jnp.float32


# ----------------------------------------------------------------------------- invalid input


def test_bad_shapes():
    with pytest.raises(ValueError, match="fields must have shape .*2 dimensions"):
        PottsModel(jnp.zeros(3), jnp.zeros((3, 3, 2, 2)))
    with pytest.raises(ValueError, match="couplings must have shape .*4 dimensions"):
        PottsModel(jnp.zeros((3, 2)), jnp.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match=r"couplings must have shape \(L, L, q, q\) = \(3, 3, 2, 2\)"):
        PottsModel(jnp.zeros((3, 2)), jnp.zeros((3, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"J must have shape \(L, L\) = \(3, 3\)"):
        FactoredPotts(jnp.zeros((3, 2)), jnp.zeros((4, 4)), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"U must have shape \(q, q\) = \(2, 2\)"):
        FactoredPotts(jnp.zeros((3, 2)), jnp.zeros((3, 3)), jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="U must have shape .*2 dimensions"):
        FactoredPotts(jnp.zeros((3, 2)), jnp.zeros((3, 3)), jnp.zeros(2))


def test_q_must_be_at_least_two():
    with pytest.raises(ValueError, match="q >= 2"):
        PottsModel(jnp.zeros((3, 1)), jnp.zeros((3, 3, 1, 1)))
    with pytest.raises(ValueError, match="q >= 2"):
        FactoredPotts(jnp.zeros((3, 1)), jnp.zeros((3, 3)), jnp.zeros((1, 1)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters(bad):
    h = np.zeros((3, 2), np.float32)
    h[1, 1] = bad
    with pytest.raises(ValueError, match="fields contains 1 non-finite"):
        PottsModel(h, jnp.zeros((3, 3, 2, 2)))
    C = np.zeros((3, 3, 2, 2), np.float32)
    C[0, 1, 0, 0] = C[1, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="couplings contains 2 non-finite"):
        PottsModel(jnp.zeros((3, 2)), C)
    J = np.zeros((3, 3), np.float32)
    J[0, 2] = bad
    with pytest.raises(ValueError, match="J contains 1 non-finite"):
        FactoredPotts(jnp.zeros((3, 2)), J, jnp.eye(2))
    with pytest.raises(ValueError, match="U contains 1 non-finite"):
        FactoredPotts(jnp.zeros((3, 2)), jnp.zeros((3, 3)), np.array([[0.0, bad], [0.0, 0.0]]))


def test_non_zero_diagonal():
    C = np.zeros((3, 3, 2, 2), np.float32)
    C[1, 1, 0, 1] = 0.5
    with pytest.raises(ValueError, match="couplings must have zero diagonal.*0.5"):
        PottsModel(jnp.zeros((3, 2)), C)
    with pytest.raises(ValueError, match="J must have zero diagonal"):
        FactoredPotts(jnp.zeros((3, 2)), jnp.eye(3), jnp.eye(2))


def test_non_symmetric_couplings_refused_by_energy_only():
    model = MODELS["dense-5x3"]
    C = np.array(model.couplings)
    C[0, 1, 0, 2] += 0.1
    bad = PottsModel(model.fields, C)
    s = jnp.zeros(5, jnp.int32)
    assert potts.is_joint(model) and not potts.is_joint(bad)
    with pytest.raises(ValueError, match=r"energy needs a joint model.*J_ij\(a,b\) != J_ji\(b,a\)"):
        potts.energy(bad, s)
    potts.local_fields(bad, s)  # conditionals are fine
    fac = MODELS["factored-gaussian-random"]
    U = np.array(fac.U)
    U[0, 1] += 0.1
    with pytest.raises(ValueError, match="energy needs a joint model.*J or U is not symmetric"):
        potts.energy(FactoredPotts(fac.fields, fac.J, U), s)
    J = np.array(fac.J)
    J[0, 1] += 0.1
    with pytest.raises(ValueError, match="energy needs a joint model"):
        potts.energy(FactoredPotts(fac.fields, J, fac.U), s)
    # Asymmetry at rounding level is still a joint model.
    tiny = PottsModel(model.fields, model.couplings.at[0, 1, 0, 2].add(1e-7))
    assert potts.is_joint(tiny)
    potts.energy(tiny, s)
    with pytest.raises(ValueError, match="check needs a joint model"):
        potts.check_joint(bad, "check")


def test_wrong_types():
    with pytest.raises(TypeError, match="fields must be an array of numbers, got str"):
        PottsModel("abc", jnp.zeros((3, 3, 2, 2)))
    with pytest.raises(TypeError, match="couplings must be an array of numbers"):
        PottsModel(jnp.zeros((3, 2)), [[["a"]]])
    with pytest.raises(TypeError, match="fields must be real"):
        PottsModel(jnp.zeros((3, 2)) + 1j, jnp.zeros((3, 3, 2, 2)))
    with pytest.raises(TypeError, match="U must be real"):
        FactoredPotts(jnp.zeros((3, 2)), jnp.zeros((3, 3)), jnp.eye(2) * 1j)
    for fn in (potts.energy, potts.local_fields, potts.conditional_logits):
        with pytest.raises(TypeError, match="expected a PottsModel or FactoredPotts, got dict"):
            fn({"fields": 0}, jnp.zeros(3, jnp.int32))
    for fn in (potts.to_dense, potts.zero_sum_gauge, potts.is_joint):
        with pytest.raises(TypeError, match="expected a PottsModel or FactoredPotts"):
            fn(np.zeros((3, 2)))


@pytest.mark.parametrize("fn", [potts.energy, potts.local_fields, potts.conditional_logits])
def test_bad_sequences(fn):
    model = MODELS["dense-5x3"]
    with pytest.raises(ValueError, match=r"colour\(s\) outside 0..2"):
        fn(model, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match=r"colour\(s\) outside 0..2"):
        fn(model, np.array([0, -1, 2, 1, 0]))
    with pytest.raises(ValueError, match="last dimension L=5"):
        fn(model, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="one sequence of shape"):
        fn(model, np.zeros((5, 5), np.int32))  # a batch with M == L must not broadcast silently
    with pytest.raises(TypeError, match="integer colours"):
        fn(model, np.array([0, 1.5, 2, 0, 1]))


# ----------------------------------------------------------------------------- constructors


def test_dense_constructor():
    model = potts.random_dense_potts(jax.random.key(25), 5, 3)
    C = np.asarray(model.couplings)
    assert model.fields.shape == (5, 3) and C.shape == (5, 5, 3, 3)
    assert (model.L, model.q) == (5, 3)
    np.testing.assert_array_equal(C, C.transpose(1, 0, 3, 2))
    np.testing.assert_array_equal(C[np.arange(5), np.arange(5)], 0)
    assert potts.is_joint(model)


def test_coupling_scales_are_statistically_plausible():
    L = 60
    J = np.asarray(potts.gaussian_couplings(jax.random.key(26), L, scale=2.0))
    np.testing.assert_array_equal(J, J.T)
    np.testing.assert_array_equal(np.diag(J), 0)
    upper = J[np.triu_indices(L, 1)]
    # Var J_ij = scale^2 / L; sample variance of ~1770 normals has ~3.4% relative sd.
    assert abs(upper.var() * L / 4.0 - 1) < 0.15
    # Dense: 12 models x 10 pairs x 9 colour pairs, Var = scale^2 / L (~5% relative sd).
    keys = jax.random.split(jax.random.key(27), 12)
    C = np.stack([np.asarray(potts.random_dense_potts(k, 5, 3, coupling_scale=2.0).couplings) for k in keys])
    i, j = np.triu_indices(5, 1)
    upper = C[:, i, j].ravel()
    assert abs(upper.var() * 5 / 4.0 - 1) < 0.25
    h = np.asarray(potts.random_fields(jax.random.key(28), L, L, scale=0.5))
    assert h.shape == (L, L) and abs(h.std() / 0.5 - 1) < 0.1


@pytest.mark.parametrize("mean_degree", [0.0, 2.0, 5.0])
def test_erdos_renyi_density(mean_degree):
    L = 60
    J = np.asarray(potts.erdos_renyi_couplings(jax.random.key(29), L, mean_degree=mean_degree))
    np.testing.assert_array_equal(J, J.T)
    np.testing.assert_array_equal(np.diag(J), 0)
    n_pairs = L * (L - 1) // 2
    p = mean_degree / (L - 1)
    edges = np.count_nonzero(J[np.triu_indices(L, 1)])
    # Binomial(n_pairs, p): within 5 standard deviations of its mean.
    assert abs(edges - n_pairs * p) <= 5 * np.sqrt(n_pairs * p * (1 - p)) + 1e-9
    assert abs(np.count_nonzero(J, axis=1).mean() - mean_degree) <= 0.1 * mean_degree + 0.6


def test_erdos_renyi_complete_graph():
    J = np.asarray(potts.erdos_renyi_couplings(jax.random.key(30), 5, mean_degree=4.0))
    assert np.count_nonzero(J) == 20


def test_colour_matrices():
    U = np.asarray(potts.random_colour_matrix(jax.random.key(31), 3, scale=2.0))
    assert U.shape == (3, 3)
    np.testing.assert_allclose(U, U.T)
    np.testing.assert_array_equal(potts.potts_colour_matrix(3), np.eye(3))


@pytest.mark.parametrize("graph", ["gaussian", "erdos_renyi"])
@pytest.mark.parametrize("colours", ["random", "potts"])
def test_factored_constructor(graph, colours):
    model = potts.random_factored_potts(jax.random.key(32), 5, 3, graph=graph, colours=colours, colour_scale=1.5)
    assert isinstance(model, FactoredPotts)
    assert model.fields.shape == (5, 3) and model.J.shape == (5, 5) and model.U.shape == (3, 3)
    J, U = np.asarray(model.J), np.asarray(model.U)
    np.testing.assert_array_equal(J, J.T)
    np.testing.assert_array_equal(np.diag(J), 0)
    np.testing.assert_allclose(U, U.T)
    if colours == "potts":
        np.testing.assert_array_equal(U, 1.5 * np.eye(3))
    assert potts.is_joint(model)


def test_constructors_are_deterministic_in_the_key():
    a = potts.random_factored_potts(jax.random.key(33), 5, 3)
    b = potts.random_factored_potts(jax.random.key(33), 5, 3)
    c = potts.random_factored_potts(jax.random.key(34), 5, 3)
    np.testing.assert_array_equal(a.J, b.J)
    assert not np.allclose(a.J, c.J)


def test_constructor_bad_arguments():
    key = jax.random.key(35)
    with pytest.raises(ValueError, match="L must be an integer >= 2, got 1"):
        potts.random_dense_potts(key, 1, 3)
    with pytest.raises(ValueError, match="q must be an integer >= 2, got 1"):
        potts.random_dense_potts(key, 3, 1)
    with pytest.raises(ValueError, match="L must be an integer >= 2, got 2.5"):
        potts.gaussian_couplings(key, 2.5)
    with pytest.raises(ValueError, match="q must be an integer >= 2, got True"):
        potts.random_colour_matrix(key, True)
    with pytest.raises(ValueError, match="q must be an integer >= 2"):
        potts.potts_colour_matrix(0)
    with pytest.raises(ValueError, match=r"mean_degree must be in \[0, L-1\] = \[0, 4\], got 5"):
        potts.erdos_renyi_couplings(key, 5, mean_degree=5)
    with pytest.raises(ValueError, match="mean_degree must be in"):
        potts.erdos_renyi_couplings(key, 5, mean_degree=-1.0)
    with pytest.raises(ValueError, match="graph must be 'gaussian' or 'erdos_renyi', got 'grid'"):
        potts.random_factored_potts(key, 4, 3, graph="grid")
    with pytest.raises(ValueError, match="colours must be 'random' or 'potts', got 'ising'"):
        potts.random_factored_potts(key, 4, 3, colours="ising")
    with pytest.raises(ValueError, match="q must be an integer >= 2"):
        potts.random_factored_potts(key, 4, 1)


# ----------------------------------------------------------------------------- gauge and symmetry helpers


def test_double_centre_symmetrize_and_joint_model():
    from jaxpotts.potts import double_centre, is_joint, joint_model, symmetrize_couplings

    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 4, 5, 5))
    d = double_centre(x)
    assert isinstance(d, np.ndarray)
    np.testing.assert_allclose(d.sum(-1), 0, atol=1e-12)
    np.testing.assert_allclose(d.sum(-2), 0, atol=1e-12)
    np.testing.assert_allclose(double_centre(d), d, atol=1e-12)  # a projection
    # removes exactly the row and column shifts
    shifted = x + rng.normal(size=(3, 4, 5, 1)) + rng.normal(size=(3, 4, 1, 5))
    np.testing.assert_allclose(double_centre(shifted), d, atol=1e-12)
    C = rng.normal(size=(4, 4, 3, 3))
    C[np.arange(4), np.arange(4)] = 0
    S = np.asarray(symmetrize_couplings(C))
    np.testing.assert_allclose(S, S.transpose(1, 0, 3, 2))
    np.testing.assert_allclose(S[0, 1, 2, 0], 0.5 * (C[0, 1, 2, 0] + C[1, 0, 0, 2]))
    asym = PottsModel(jnp.zeros((4, 3)), jnp.asarray(C))
    joint = joint_model(asym)
    assert is_joint(joint) and not is_joint(asym)
    np.testing.assert_allclose(np.asarray(joint.couplings), S, rtol=1e-6)
    sym = PottsModel(jnp.zeros((4, 3)), jnp.asarray(S))
    assert joint_model(sym) is sym
    with pytest.raises(TypeError, match="no Potts energy"):
        joint_model(object())

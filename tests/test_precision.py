"""The precision policy (docs/accelerators.md): float32 means float32 on every backend.

XLA runs float32 products in TF32 on recent NVIDIA GPUs (and in bfloat16 passes on TPUs) unless
a product asks for more. Every public numerical function is lowered here (on any backend: the
precision is an attribute of each `dot_general` in the StableHLO, fixed at trace time) and every
matrix product in it, gradients included, must carry precision HIGHEST. A future edit that adds
a plain `a @ b` or `jnp.einsum` to one of these paths fails this test on a CPU.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpotts
from jaxpotts import _dense_pl, contacts, exact, generative, losses, msa, optim, sampling, statistics
from jaxpotts.attention import FactoredAttention, Transformer
from jaxpotts.potts import random_dense_potts, random_factored_potts

PRODUCT = re.compile(r"stablehlo\.(dot_general|dot|convolution)\b[^\n]*")
L, q, M = 5, 3, 7


def products(fn, *args) -> list[str]:
    """Every matrix product in the StableHLO of `jax.jit(fn)(*args)` (one line each)."""
    text = jax.jit(fn).lower(*args).as_text()
    return [m.group(0) for m in PRODUCT.finditer(text)]


def _models():
    k = jax.random.PRNGKey(0)
    return {
        "dense": random_dense_potts(k, L, q),
        "factored": random_factored_potts(k, L, q),
        "attention": FactoredAttention(L, q, 2, 3, key=k, fields=True),
        "attention_linear": FactoredAttention(L, q, 2, 3, key=k, softmax=False),
        "transformer": Transformer(L, q, 1, key=k, d_model=8, n_heads=2),
    }


def _seqs():
    return jax.random.randint(jax.random.PRNGKey(1), (M, L), 0, q, dtype=jnp.int32)


def _cases():
    """(name, function, args, has_products): the public numerical paths, with gradients.

    has_products says whether the lowering contains matrix products at all (dense energies,
    enumeration and pseudo-likelihood gather rows instead); where it does not, the test still
    fails on any low-precision product a future edit adds."""
    models = _models()
    seqs, w = _seqs(), jnp.linspace(0.5, 1.0, M)
    key = jax.random.PRNGKey(2)
    cases = []
    for kind in ("dense", "factored"):
        m = models[kind]
        cases += [
            (f"energy[{kind}]", jaxpotts.energy, (m, seqs[0]), False),
            (f"local_fields[{kind}]", jaxpotts.local_fields, (m, seqs[0]), True),
            (f"conditional_logits[{kind}]", jaxpotts.conditional_logits, (m, seqs[0], 0.7), True),
            (f"exact.log_partition[{kind}]", exact.log_partition, (m, 0.8), False),
            (f"exact.probabilities[{kind}]", lambda m: exact.probabilities(m)[1], (m,), False),
            (f"exact.marginals[{kind}]", exact.marginals, (m,), True),
            (f"exact.pair_marginals[{kind}]", exact.pair_marginals, (m,), True),
            (f"exact.conditional_entropy[{kind}]", exact.conditional_entropy, (m,), True),
            (f"grad exact.log_partition[{kind}]", jax.grad(exact.log_partition), (m,), False),
            (f"scores[{kind}]", contacts.scores, (m,), False),
            (f"chain energies[{kind}]", sampling._chain_energies, (m, seqs), kind == "factored"),
        ]
        for method in ("gibbs", "metropolis"):
            for schedule in ("sequential", "random"):
                cases.append(
                    (
                        f"sweep[{kind},{method},{schedule}]",
                        lambda m, s, method=method, schedule=schedule: sampling.sweep(
                            m, key, s, method=method, schedule=schedule, kernel="xla"
                        ),
                        (m, seqs),
                        kind == "factored" or method == "gibbs",
                    )
                )
    for kind, m in models.items():
        cases += [
            (f"pseudo_likelihood[{kind}]", losses.pseudo_likelihood, (m, seqs, w), kind != "dense"),
            (f"grad pseudo_likelihood[{kind}]", jax.grad(losses.pseudo_likelihood), (m, seqs, w), kind != "dense"),
            (f"mlm_loss[{kind}]", losses.mlm_loss, (m, seqs, w), kind != "dense"),
            (f"grad stochastic_mlm_loss[{kind}]", jax.grad(losses.stochastic_mlm_loss), (m, seqs, key, w), True),
            (f"sequence_pseudo_likelihoods[{kind}]", losses.sequence_pseudo_likelihoods, (m, seqs), kind != "dense"),
            (f"all_conditional_logits[{kind}]", losses.all_conditional_logits, (m, seqs[0]), True),
            (f"site_logits[{kind}]", lambda m, s: losses.site_logits(m, s, 2), (m, seqs[0]), True),
            (f"l2_penalty[{kind}]", lambda m: losses.l2_penalty(m, 0.1, 0.01), (m,), kind.startswith("attention")),
        ]
    fa = models["attention"]
    cases += [
        ("FactoredAttention.couplings", lambda m: m.couplings(), (fa,), True),
        ("Transformer.__call__", lambda m, s: m(s), (models["transformer"], seqs[0]), True),
    ]
    opt = optim.lbfgs(memory_size=3)

    def lbfgs_step(params):  # the line search and the two-loop recursion's inner products
        def value_fn(p):
            return jnp.sum(jnp.arange(1.0, 6.0) * p**2)

        state = opt.init(params)
        for _ in range(2):
            value, grad = jax.value_and_grad(value_fn)(params)
            updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
            params = params + updates
        return params

    cases.append(("optim.lbfgs update", lbfgs_step, (jnp.ones(5),), True))
    dense = models["dense"]
    h, W = dense.fields, _dense_pl.coupling_matrix(dense.couplings)
    cases += [
        ("_dense_pl.weighted_nll_sum", lambda h, W: _dense_pl.weighted_nll_sum(h, W, seqs, w), (h, W), False),
        (
            "grad _dense_pl.weighted_nll_sum",
            jax.grad(lambda h, W: _dense_pl.weighted_nll_sum(h, W, seqs, w), argnums=(0, 1)),
            (h, W),
            False,
        ),
        ("site_frequencies", lambda s, w: statistics.site_frequencies(s, q, w), (seqs, w), True),
        ("pair_frequencies", lambda s, w: statistics.pair_frequencies(s, q, w), (seqs, w), True),
        ("connected_correlations", lambda s, w: statistics.connected_correlations(s, q, w), (seqs, w), True),
        (
            "three_site_correlations",
            lambda s, w: statistics.three_site_correlations(s, q, np.array([[0, 1, 2]]), np.array([[0, 1, 2]]), w),
            (seqs, w),
            True,
        ),
        (
            "generative nearest Hamming",
            lambda a, b: generative._nearest_identity(a, b, jnp.full((4,), -1), 4, q=q, chunk=4),
            (jnp.zeros((4, L), jnp.int32), jnp.zeros((4, L), jnp.int32)),
            True,
        ),
        ("generative project", generative._project, (seqs, jnp.ones((L, q)), jnp.ones((L, q, 2))), True),
        (
            "msa sequence weights",
            lambda b: msa._neighbour_counts(
                b,
                jnp.ones((2, 4), jnp.int32),
                jnp.array([0, 0, 1]),
                jnp.array([0, 1, 1]),
                jnp.float32(4.0),
                q=q,
                dtype=jnp.float32,
            ),
            (jnp.zeros((2, 4, L), jnp.int32),),
            True,
        ),
        (
            "msa sequence weights bf16",
            lambda b: msa._neighbour_counts(
                b,
                jnp.ones((1, 4), jnp.int32),
                jnp.array([0]),
                jnp.array([0]),
                jnp.float32(4.0),
                q=q,
                dtype=jnp.bfloat16,
            ),
            (jnp.zeros((1, 4, L), jnp.int32),),
            True,
        ),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("name, fn, args, has_products", CASES, ids=[c[0] for c in CASES])
def test_every_product_is_highest_precision(name, fn, args, has_products):
    found = products(fn, *args)
    low = [p for p in found if "precision = [HIGHEST, HIGHEST]" not in p]
    assert not low, f"{name}: {len(low)} of {len(found)} products without HIGHEST precision:\n" + "\n".join(low)
    if has_products:  # the check above is not vacuous where the maths has products
        assert found, f"{name}: no matrix product found; update has_products if the code changed"


def test_the_check_can_fail():
    # The same lowering of a plain product shows DEFAULT: the pattern above would catch it.
    a = jnp.ones((3, 4))
    (line,) = products(lambda a: a @ a.T, a)
    assert "precision = [DEFAULT, DEFAULT]" in line


def test_precision_survives_a_user_jit_with_low_default_precision():
    # A user's jit under jax.default_matmul_precision("bfloat16") keeps our products exact.
    m = random_dense_potts(jax.random.PRNGKey(3), L, q)
    with jax.default_matmul_precision("bfloat16"):
        found = products(lambda m, s: jaxpotts.local_fields(m, s), m, _seqs()[0])
    assert found and all("precision = [HIGHEST, HIGHEST]" in p for p in found)
    np.testing.assert_allclose(
        jax.jit(jaxpotts.local_fields)(m, _seqs()[0]), jaxpotts.local_fields(m, _seqs()[0]), rtol=0, atol=0
    )

"""Validation of a model as a generator (jaxpotts.generative): the statistics against float64
numpy, exact samples against exact enumeration, Hamming and PCA against brute force, the split,
input errors, and `jaxpotts validate` on a tiny alignment and saved models."""

import itertools
import json

import jax
import numpy as np
import pytest
from _subprocess import assert_figure

from jaxpotts import cli, exact, generative, potts
from jaxpotts.attention import FactoredAttention
from jaxpotts.serialization import save_model
from jaxpotts.statistics import summary_statistics, three_site_correlations


def _random_seqs(seed, M, L, q):
    return np.random.default_rng(seed).integers(0, q, (M, L)).astype(np.int32)


def test_three_site_correlations_match_a_float64_numpy_expansion(x64):
    M, L, q = 60, 5, 3
    rng = np.random.default_rng(0)
    s = rng.integers(0, q, (M, L))
    w = rng.uniform(0.1, 1.0, M)
    entries = [(t, c) for t in itertools.combinations(range(L), 3) for c in itertools.product(range(q), repeat=3)]
    sites = np.array([t for t, _ in entries])
    colours = np.array([c for _, c in entries])
    got = np.asarray(three_site_correlations(s, q, sites, colours, w))
    # f_ijk - f_ij f_k - f_ik f_j - f_jk f_i + 2 f_i f_j f_k, each frequency a weighted count
    x = np.eye(q)[s]  # (M, L, q)
    W = w.sum()
    f1 = np.einsum("m,mia->ia", w, x) / W
    f2 = np.einsum("m,mia,mjb->ijab", w, x, x) / W
    f3 = np.einsum("m,mia,mjb,mkc->ijkabc", w, x, x, x) / W
    i, j, k = sites.T
    a, b, c = colours.T
    want = (
        f3[i, j, k, a, b, c]
        - f2[i, j, a, b] * f1[k, c]
        - f2[i, k, a, c] * f1[j, b]
        - f2[j, k, b, c] * f1[i, a]
        + 2 * f1[i, a] * f1[j, b] * f1[k, c]
    )
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    assert np.abs(want).max() > 0.01  # the comparison is not between zeros


def test_three_site_correlations_refuse_bad_entries():
    s = _random_seqs(0, 10, 4, 3)
    with pytest.raises(ValueError, match="distinct"):
        three_site_correlations(s, 3, [[0, 0, 1]], [[0, 1, 2]])
    with pytest.raises(ValueError, match="sites must lie in 0..3"):
        three_site_correlations(s, 3, [[0, 1, 4]], [[0, 1, 2]])
    with pytest.raises(ValueError, match="colours must lie in 0..2"):
        three_site_correlations(s, 3, [[0, 1, 2]], [[0, 1, 3]])


def _exact_samples(model, n, seed):
    states, p = (np.asarray(x) for x in exact.probabilities(model))
    p = p.astype(np.float64)
    return states[np.random.default_rng(seed).choice(len(p), n, p=p / p.sum())]


def test_exact_samples_agree_with_the_exact_statistics_and_a_mismatched_model_does_not():
    """The natural set is every state weighted by its exact probability under A, so the
    'training' statistics are A's exact ones. 20,000 exact samples of A then agree up to
    sampling noise (fixed seeds; the thresholds leave margins of several standard errors) and
    exact samples of another model B clearly do not."""
    L, q = 5, 3
    A = potts.random_dense_potts(jax.random.PRNGKey(0), L, q, coupling_scale=1.0)
    B = potts.random_dense_potts(jax.random.PRNGKey(1), L, q, coupling_scale=1.0)
    states, p_A = (np.asarray(x) for x in exact.probabilities(A))
    kwargs = dict(key=jax.random.PRNGKey(2), weights=p_A, n_triplets=3000, n_hamming=100)
    good = generative.validate(A, states, generated=_exact_samples(A, 20_000, 3), **kwargs).summary["agreement"]
    bad = generative.validate(B, states, generated=_exact_samples(B, 20_000, 4), **kwargs).summary["agreement"]
    for stat, r_min in (("site", 0.999), ("connected", 0.99), ("three_site", 0.95)):
        r, slope = good[stat]["model_vs_train"]["pearson"], good[stat]["model_vs_train"]["slope"]
        assert r > r_min and abs(slope - 1) < 0.05, (stat, r, slope)
    assert bad["connected"]["model_vs_train"]["pearson"] < 0.7
    assert bad["three_site"]["model_vs_train"]["pearson"] < 0.7
    assert set(good["connected"]) == {"model_vs_train"}  # no held-out set, no held-out comparisons


def test_nearest_hamming_matches_brute_force():
    q, L = 4, 7
    refs = _random_seqs(0, 600, L, q)  # more than one 512-sequence chunk on both sides
    queries = _random_seqs(1, 700, L, q)
    brute = (queries[:, None, :] != refs[None, :, :]).sum(-1)
    np.testing.assert_array_equal(generative.nearest_hamming(queries, refs, q), brute.min(1))
    rows = np.arange(0, 600, 7)
    loo = (refs[rows, None, :] != refs[None, :, :]).sum(-1).astype(float)
    loo[np.arange(rows.size), rows] = np.inf
    got = generative.nearest_hamming(refs[rows], refs, q, exclude=rows)
    np.testing.assert_array_equal(got, loo.min(1))
    assert np.all(generative.nearest_hamming(refs[rows], refs, q) == 0)  # itself, when not excluded


def test_pca_matches_numpy_svd_of_the_weighted_one_hot_sequences(x64):
    M, L, q, k = 300, 6, 3, 3
    rng = np.random.default_rng(0)
    s = rng.integers(0, q, (M, L))
    s[:, 1] = np.where(rng.random(M) < 0.8, s[:, 0], s[:, 1])  # some structure for the top axes
    w = rng.uniform(0.2, 1.0, M)
    st = summary_statistics(s, q, w)
    axes, variances, explained = generative.principal_components(st["site"], st["connected"], k)
    y = generative.project(s, st["site"], axes)
    X = np.eye(q)[s].reshape(M, L * q)
    mu = w @ X / w.sum()
    _, sv, Vt = np.linalg.svd(np.sqrt(w / w.sum())[:, None] * (X - mu), full_matrices=False)
    np.testing.assert_allclose(variances, sv[:k] ** 2, rtol=1e-10)
    np.testing.assert_allclose(explained, sv[:k] ** 2 / np.sum(sv**2), rtol=1e-10)
    V = Vt[:k].T
    signs = np.sign(np.sum(V * axes.reshape(L * q, k), axis=0))
    np.testing.assert_allclose(axes.reshape(L * q, k), V * signs, atol=1e-10)
    np.testing.assert_allclose(y, (X - mu) @ (V * signs), atol=1e-10)


def test_split_is_deterministic_per_key_and_refuses_empty_parts():
    tr, te = generative.split_sequences(jax.random.PRNGKey(5), 100, 0.2)
    tr2, te2 = generative.split_sequences(jax.random.PRNGKey(5), 100, 0.2)
    np.testing.assert_array_equal(te, te2)
    np.testing.assert_array_equal(tr, tr2)
    assert te.size == 20 and np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(100))
    _, te3 = generative.split_sequences(jax.random.PRNGKey(6), 100, 0.2)
    assert not np.array_equal(te, te3)
    with pytest.raises(ValueError, match="empty test set"):
        generative.split_sequences(jax.random.PRNGKey(0), 10, 0.01)
    with pytest.raises(ValueError, match="empty training set"):
        generative.split_sequences(jax.random.PRNGKey(0), 2, 0.9)


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(natural=_random_seqs(0, 20, 5, 4)), "colours 0..3 but the model has q = 3"),
        (dict(natural=_random_seqs(0, 20, 6, 3)), "natural_seqs have L = 6 sites but the model has L = 5"),
        (dict(test_seqs=np.zeros((0, 5), np.int32)), "test_seqs is empty"),
        (dict(test_seqs=_random_seqs(1, 5, 4, 3)), "test_seqs have L = 4"),
        (dict(generated=_random_seqs(1, 5, 5, 7)), "generated contain colours"),
        (dict(test_fraction=0.01), "empty test set"),
        (dict(test_fraction=0.2, test_seqs=_random_seqs(1, 5, 5, 3)), "not both"),
        (dict(weights=np.ones(3)), "weights must have shape"),
        (dict(max_memory="1M"), "validation statistics .* needs about"),
    ],
)
def test_bad_inputs_give_clear_errors(change, words):
    model = potts.random_dense_potts(jax.random.PRNGKey(0), 5, 3)
    natural = change.pop("natural", _random_seqs(0, 20, 5, 3))
    kwargs = {"key": jax.random.PRNGKey(0), "generated": _random_seqs(2, 10, 5, 3), **change}
    with pytest.raises((ValueError, TypeError), match=words):
        generative.validate(model, natural, **kwargs)


def test_an_attention_layer_is_validated_through_its_joint_potts_model(tmp_path):
    """Given sequences (no sampler) and a held-out set: every comparison is reported, the
    report files are written, and the energies are those of the symmetrised layer."""
    L, q = 6, 3
    layer = FactoredAttention(L, q, 2, 2, key=jax.random.PRNGKey(0), fields=True, init_scale=0.5)
    natural, test, gen = _random_seqs(0, 80, L, q), _random_seqs(1, 30, L, q), _random_seqs(2, 50, L, q)
    rep = generative.validate(
        layer, natural, key=jax.random.PRNGKey(1), test_seqs=test, generated=gen, n_triplets=200, n_hamming=40
    )
    assert set(rep.summary["agreement"]["three_site"]) == {"model_vs_train", "model_vs_test", "train_vs_test"}
    joint = potts.joint_model(layer)
    want = np.array([float(potts.energy(joint, s)) for s in gen[:5]])
    np.testing.assert_allclose(rep.arrays["energy_model"][:5], want, rtol=1e-5)
    assert rep.summary["sampler"] is None and rep.summary["sizes"]["model"] == 50
    written = generative.write_report(rep, tmp_path, figure=False)
    data = json.loads((tmp_path / "validation.json").read_text())
    assert data["hamming"]["test"]["n"] == 30 and len(written) == 2
    assert "C_ijk(a,b,c)" in (tmp_path / "validation.md").read_text()


# ----------------------------------------------------------------------------- command line


def _write_alignment(path, seqs):
    letters = np.array(list("-ACDEFGHIKLMNPQRSTVWY"))
    path.write_text("".join(f">s{m}\n{''.join(letters[s])}\n" for m, s in enumerate(seqs)))


def test_validate_cli_on_a_tiny_alignment_and_saved_model(tmp_path, monkeypatch):
    L, q = 6, 21
    rng = np.random.default_rng(0)
    base = rng.integers(0, q, L)
    seqs = np.where(rng.random((60, L)) < 0.7, base, rng.integers(0, q, (60, L)))
    _write_alignment(tmp_path / "aln.fasta", seqs)
    save_model(tmp_path / "model.eqx", potts.random_dense_potts(jax.random.PRNGKey(0), L, q, coupling_scale=0.3))
    argv = ["validate", "aln.fasta", "model.eqx", "--test-fraction", "0.25", "--chains", "8", "--sweeps", "5"]
    argv += ["--samples", "10", "--thin", "1", "--triplets", "300", "--hamming", "20", "--out", "out", "--quiet"]
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 0
    summary = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert summary["sizes"] == {**summary["sizes"], "train": 45, "test": 15, "model": 80, "L": L, "q": q}
    assert summary["sampler"]["n_chains"] == 8 and summary["sampler"]["n_samples"] == 10
    assert -1 <= summary["agreement"]["connected"]["model_vs_test"]["pearson"] <= 1
    assert (tmp_path / "out" / "validation.md").read_text().startswith("# Validation")
    assert_figure(tmp_path / "out" / "validation.png")


def test_validate_help_lists_its_and_the_common_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["validate", "--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0
    for option in ("--test-fraction", "--test-alignment", "--chains", "--sweeps", "--seed", "--out", "--max-memory"):
        assert option in text


def test_validate_cli_refuses_a_model_of_another_length_in_one_line(tmp_path, capsys):
    _write_alignment(tmp_path / "aln.fasta", _random_seqs(0, 10, 5, 21))
    save_model(tmp_path / "model.eqx", potts.random_dense_potts(jax.random.PRNGKey(0), 4, 21))
    code = cli.main(["validate", str(tmp_path / "aln.fasta"), str(tmp_path / "model.eqx"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has L = 4, q = 21 but" in err[0] and "L = 5" in err[0]

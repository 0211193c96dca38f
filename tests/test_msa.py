"""Alignment reading, alphabets, filters and sequence weights (jaxpotts.msa)."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from jaxpotts import msa
from jaxpotts.msa import BINARY, PROTEIN, RNA, Alphabet, read_alignment, sequence_weights

PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"
needs_pfam = pytest.mark.skipif(not (PFAM / "PF00014.fasta").exists(), reason="shared/data/pfam not present")


def write(tmp_path, name, text, compress=False):
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def enc(*rows, alphabet=PROTEIN):
    return np.stack([alphabet.encode(r) for r in rows])


# ----------------------------------------------------------------------------- alphabets


def test_protein_alphabet_layout_and_aliases():
    assert PROTEIN.q == 21 and PROTEIN.gap_index == 0 and PROTEIN.symbols[0] == "-"
    assert PROTEIN.symbols[1:] == "ACDEFGHIKLMNPQRSTVWY"
    idx = PROTEIN.index
    for letter in "XBZJ*":  # ambiguous letters and '*' are not residues (read_alignment handles them)
        assert not PROTEIN.knows(letter)
    assert idx["U"] == idx["C"] and idx["O"] == idx["K"]
    assert not PROTEIN.knows("a") and not PROTEIN.knows(".")
    np.testing.assert_array_equal(PROTEIN.encode("-AY"), [0, 1, 20])
    assert PROTEIN.decode(PROTEIN.encode("ACD-Y")) == "ACD-Y"


def test_rna_binary_and_custom_alphabets():
    assert RNA.q == 5 and RNA.gap_index == 0
    np.testing.assert_array_equal(RNA.encode("ACGUTN"), [1, 2, 3, 4, 4, 0])
    assert BINARY.q == 2 and BINARY.gap_index is None
    np.testing.assert_array_equal(BINARY.encode("0110"), [0, 1, 1, 0])
    ab = Alphabet("AB-", aliases={"C": "A"})
    assert ab.gap_index == 2 and ab.index["C"] == 0
    assert Alphabet("xy", gap="y").gap_index == 1
    assert hash(ab) == hash(Alphabet("AB-", aliases=[("C", "A")]))  # frozen, hashable
    with pytest.raises(ValueError, match="distinct"):
        Alphabet("AAB")
    with pytest.raises(ValueError, match="not a symbol"):
        Alphabet("AB", aliases={"C": "D"})
    with pytest.raises(ValueError, match="already a symbol"):
        Alphabet("AB", aliases={"A": "B"})
    with pytest.raises(ValueError, match="gap symbol"):
        Alphabet("AB", gap="-")
    with pytest.raises(ValueError, match="at least 2"):
        Alphabet("A")
    with pytest.raises(ValueError, match=r"letter 'Q' at position 2"):
        RNA.encode("AQ")


# ----------------------------------------------------------------------------- formats

EXPECTED = ["ACDE-", "AC-EF", "YWVT-"]


def test_fasta_single_line(tmp_path):
    path = write(tmp_path, "a.fasta", ">s1 first\nACDE-\n>s2\nAC-EF\n>s3\nYWVT-\n")
    seqs, alphabet = read_alignment(path)
    assert alphabet is PROTEIN
    assert seqs.dtype == np.int32 and seqs.shape == (3, 5)
    np.testing.assert_array_equal(seqs, enc(*EXPECTED))
    aln = read_alignment(path)
    assert aln.names == ("s1", "s2", "s3")
    np.testing.assert_array_equal(aln.columns, np.arange(5))
    np.testing.assert_array_equal(aln.rows, np.arange(3))
    assert (aln.M, aln.L, aln.n_sequences, aln.n_columns) == (3, 5, 3, 5)


def test_fasta_wrapped_crlf_blank_lines(tmp_path):
    text = ">s1\r\nAC\r\nDE-\r\n\r\n>s2\r\nA\r\nC-EF\r\n>s3\r\nYWV\r\nT-\r\n"
    seqs, _ = read_alignment(write(tmp_path, "wrapped.fa", text))
    np.testing.assert_array_equal(seqs, enc(*EXPECTED))


def test_a2m_inserts_dropped(tmp_path):
    # lower case and '.' are insert states; upper case and '-' are match columns.
    text = ">s1\n..ACkkDE-..\n>s2\n..AC.-DE..\n>s3\nyyYWV..T-..\n"
    seqs, _ = read_alignment(write(tmp_path, "x.a2m", text), format="a2m")
    np.testing.assert_array_equal(seqs, enc("ACDE-", "AC-DE", "YWVT-"))


def test_a3m_with_comment_header(tmp_path):
    text = "#A3M#\n>s1\nACDE-\n>s2\nAaaC-EF\n>s3\nYWgVT-\n"
    seqs, _ = read_alignment(write(tmp_path, "x.a3m", text))
    np.testing.assert_array_equal(seqs, enc(*EXPECTED))


def test_gzip_detected_by_magic_bytes(tmp_path):
    text = ">s1\nACDE-\n>s2\nAC-EF\n>s3\nYWVT-\n"
    for name in ("zipped.fasta", "zipped.fasta.gz"):
        seqs, _ = read_alignment(write(tmp_path, name, text, compress=True))
        np.testing.assert_array_equal(seqs, enc(*EXPECTED))


STOCKHOLM = """# STOCKHOLM 1.0
#=GF ID   TEST
#=GS s1/1-10 AC P00001

s1/1-10   AC..DE
s2/3-12   AC..-E
s3        ACkkDE
#=GR s1/1-10 SS  HH..HH
#=GC SS_cons HH..HH

s1/1-10   .Y
s2/3-12   aF
s3        .Y
#=GC SS_cons .H
//
"""


def test_stockholm_interleaved_blocks_and_annotations(tmp_path):
    aln = read_alignment(write(tmp_path, "x.sto", STOCKHOLM))
    assert aln.names == ("s1/1-10", "s2/3-12", "s3")
    np.testing.assert_array_equal(aln.seqs, enc("ACDEY", "AC-EF", "ACDEY"))


def test_stockholm_gzipped_explicit_format(tmp_path):
    seqs, _ = read_alignment(write(tmp_path, "x.sto.gz", STOCKHOLM, compress=True), format="stockholm")
    np.testing.assert_array_equal(seqs, enc("ACDEY", "AC-EF", "ACDEY"))


def test_stockholm_errors(tmp_path):
    with pytest.raises(ValueError, match="terminator"):
        read_alignment(write(tmp_path, "t.sto", "# STOCKHOLM 1.0\ns1 AC\n"))
    two = "# STOCKHOLM 1.0\ns1 AC\n//\n# STOCKHOLM 1.0\ns1 AC\n//\n"
    with pytest.raises(ValueError, match="more than one"):
        read_alignment(write(tmp_path, "two.sto", two))
    with pytest.raises(ValueError, match="no sequences"):
        read_alignment(write(tmp_path, "none.sto", "# STOCKHOLM 1.0\n#=GF ID x\n//\n"))


# ----------------------------------------------------------------------------- errors


def test_ragged_alignment_names_sequence_and_lengths(tmp_path):
    path = write(tmp_path, "r.fasta", ">s1\nACDE\n>s2\nACDE\n>bad\nACD\n")
    with pytest.raises(ValueError, match=r"ragged.*'bad' \(number 3\) has 3 .*'s1' has 4"):
        read_alignment(path)


def test_empty_and_sequence_less_files(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        read_alignment(write(tmp_path, "e.fasta", ""))
    with pytest.raises(ValueError, match="empty"):
        read_alignment(write(tmp_path, "e2.fasta", "\n  \n", compress=True))
    with pytest.raises(ValueError, match="no sequences"):
        read_alignment(write(tmp_path, "c.fasta", "# only a comment\n"))
    with pytest.raises(ValueError, match="cannot tell the alignment format"):
        read_alignment(write(tmp_path, "junk.fasta", "ACDE\nACDE\n"))
    with pytest.raises(ValueError, match="no match columns"):
        read_alignment(write(tmp_path, "lower.fasta", ">s1\nacde\n>s2\nacd.\n"))
    with pytest.raises(ValueError, match="looks like stockholm"):
        read_alignment(write(tmp_path, "s.fasta", STOCKHOLM), format="fasta")
    with pytest.raises(ValueError, match="format must be"):
        read_alignment(write(tmp_path, "f.fasta", ">s\nAC\n"), format="clustal")


def test_unknown_letter_strict_and_lenient(tmp_path):
    path = write(tmp_path, "u.fasta", ">s1\nACDE\n>odd\nAC&E\n")
    with pytest.raises(ValueError, match=r"unknown letter '&' in sequence 'odd' \(number 2\), match column 3"):
        read_alignment(path, strict=True)
    with pytest.warns(UserWarning, match=r"1 unknown letter.*'&' x1"):
        seqs, _ = read_alignment(path)
    np.testing.assert_array_equal(seqs[1], PROTEIN.encode("AC-E"))
    # Documented aliases (U -> C, O -> K) are accepted even when strict, and a final '*' is dropped.
    seqs, _ = read_alignment(write(tmp_path, "x.fasta", ">s\nUOA*\n"), strict=True)
    np.testing.assert_array_equal(seqs[0], PROTEIN.encode("CKA"))
    # The ambiguous letters X, B, Z, J are gaps with a counted warning, or refused when strict.
    path = write(tmp_path, "xbzj.fasta", ">s\nXBZJXA\n")
    with pytest.warns(UserWarning, match=r"5 unknown letter.*'B' x1, 'J' x1, 'X' x2, 'Z' x1"):
        seqs, _ = read_alignment(path)
    np.testing.assert_array_equal(seqs[0], PROTEIN.encode("-----A"))
    with pytest.raises(ValueError, match=r"unknown letter 'X'.*match column 1"):
        read_alignment(path, strict=True)
    # A digit is an error naming line and column, strict or not.
    with pytest.raises(ValueError, match=r"line 4, column 3: digit '9'"):
        read_alignment(write(tmp_path, "d.fasta", ">s1\nACDE\n>odd\nAC9E\n"))
    # No gap to fall back on: an error even when lenient.
    with pytest.raises(ValueError, match="no gap"):
        read_alignment(write(tmp_path, "b.fasta", ">s\n01X0\n"), alphabet=BINARY)


def test_unknown_drop_removes_their_sequences_and_counts_them(tmp_path):
    # s2: one X; s3: B and two X; s5: a lower-case x is an insertion (removed before the check).
    text = ">s1\nACDE\n>s2\nAXDE\n>s3\nBXXE\n>s4\nAC-E\n>s5\nACxDE\n>s6\nACDE\n"
    path = write(tmp_path, "x.fasta", text)
    with pytest.warns(
        UserWarning, match=r"dropped 2 of 6 sequences .*\(4 letter\(s\): 'B' x1, 'X' x3; first in sequence 's2'"
    ):
        aln = read_alignment(path, unknown="drop")
    assert aln.M == 4 and aln.n_sequences == 6 and aln.names == ("s1", "s4", "s5", "s6")
    np.testing.assert_array_equal(aln.rows, [0, 3, 4, 5])
    np.testing.assert_array_equal(aln.seqs, enc("ACDE", "AC-E", "ACDE", "ACDE"))
    # The other sequence filters act on what is left, and rows still index the file.
    with pytest.warns(UserWarning, match="dropped 2 of 6"):
        dedup = read_alignment(path, unknown="drop", remove_duplicates=True, max_gap_fraction=0.2)
    np.testing.assert_array_equal(dedup.rows, [0])
    # "gap" (the default) keeps every sequence; "error" and strict=True refuse the file alike.
    with pytest.warns(UserWarning, match="4 unknown letter"):
        assert read_alignment(path, unknown="gap").M == 6
    for kwargs in ({"unknown": "error"}, {"strict": True}):
        with pytest.raises(ValueError, match=r"unknown letter 'X' in sequence 's2' \(number 2\), match column 2"):
            read_alignment(path, **kwargs)
    with pytest.raises(ValueError, match="contradicts unknown='drop'"):
        read_alignment(path, strict=True, unknown="drop")
    with pytest.raises(ValueError, match="unknown must be 'gap', 'drop' or 'error'"):
        read_alignment(path, unknown="skip")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="removes all 2 sequences"):
        read_alignment(write(tmp_path, "all.fasta", ">a\nAX\n>b\nZA\n"), unknown="drop")
    # Nothing unknown: no warning, nothing dropped, even without a gap in the alphabet.
    assert read_alignment(write(tmp_path, "b.fasta", ">a\n01\n>b\n10\n"), alphabet=BINARY, unknown="drop").M == 2
    with pytest.warns(UserWarning, match="dropped 1 of 2"):
        assert read_alignment(write(tmp_path, "b2.fasta", ">a\n01\n>b\n1X\n"), alphabet=BINARY, unknown="drop").M == 1


def test_custom_alphabets_and_keep_insertions(tmp_path):
    seqs, alphabet = read_alignment(write(tmp_path, "rna.fa", ">r1\nACGT-\n>r2\nAC.GUu-\n"), alphabet="rna")
    assert alphabet is RNA
    np.testing.assert_array_equal(seqs, [[1, 2, 3, 4, 0], [1, 2, 3, 4, 0]])
    seqs, _ = read_alignment(write(tmp_path, "bin.fa", ">b1\n0110\n>b2\n1000\n"), alphabet="01")
    np.testing.assert_array_equal(seqs, [[0, 1, 1, 0], [1, 0, 0, 0]])
    seqs, _ = read_alignment(write(tmp_path, "low.fa", ">s1\nacde\n>s2\nac.e\n"), insertions="keep")
    np.testing.assert_array_equal(seqs, enc("ACDE", "AC-E"))


# ----------------------------------------------------------------------------- filters

FILTER_TEXT = """>a
ACDE-
>b
A----
>a_copy
ACDE-
>c
AC-EF
>d
ACDEF
"""


def test_gap_filters_and_duplicates(tmp_path):
    path = write(tmp_path, "f.fasta", FILTER_TEXT)
    aln = read_alignment(path, max_gap_fraction=0.5)  # b has 4/5 gaps
    assert aln.names == ("a", "a_copy", "c", "d")
    np.testing.assert_array_equal(aln.rows, [0, 2, 3, 4])

    aln = read_alignment(path, max_gap_fraction=0.5, max_column_gap_fraction=0.4)
    # over a, a_copy, c, d: column 2 has 1/4 gaps (kept), column 4 has 2/4 (dropped).
    np.testing.assert_array_equal(aln.columns, [0, 1, 2, 3])
    np.testing.assert_array_equal(aln.seqs, enc("ACDE", "ACDE", "AC-E", "ACDE"))
    assert aln.n_columns == 5 and aln.n_sequences == 5

    # duplicates are judged on the kept columns: d equals a there.
    aln = read_alignment(path, max_gap_fraction=0.5, max_column_gap_fraction=0.4, remove_duplicates=True)
    assert aln.names == ("a", "c")
    np.testing.assert_array_equal(aln.rows, [0, 3])

    aln = read_alignment(path, remove_duplicates=True)
    assert aln.names == ("a", "b", "c", "d")

    assert read_alignment(path, max_gap_fraction=0.0).names == ("d",)
    gappy = write(tmp_path, "g.fasta", ">s\nA-\n>t\n-A\n")
    with pytest.raises(ValueError, match="removes all 2 sequences"):
        read_alignment(gappy, max_gap_fraction=0.0)
    with pytest.raises(ValueError, match="removes all 2 columns"):
        read_alignment(gappy, max_column_gap_fraction=0.0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        read_alignment(path, max_column_gap_fraction=1.5)
    with pytest.raises(ValueError, match="need an alphabet with a gap"):
        read_alignment(write(tmp_path, "b.fa", ">s\n01\n"), alphabet=BINARY, max_gap_fraction=0.5)


# ----------------------------------------------------------------------------- weights


def brute_force_weights(X, threshold):
    X = np.asarray(X)
    ident = (X[:, None, :] == X[None, :, :]).mean(axis=-1)
    return 1.0 / (ident >= threshold).sum(axis=1)


def family(rng, M, L, q, n_parents=4, mutation=0.15):
    """Random sequences clustered around a few parents, so every threshold has neighbours."""
    parents = rng.integers(0, q, size=(n_parents, L))
    X = parents[rng.integers(0, n_parents, size=M)]
    flip = rng.random((M, L)) < mutation
    return np.where(flip, rng.integers(0, q, size=(M, L)), X).astype(np.int32)


@pytest.mark.parametrize("M,L,q,chunk", [(37, 13, 4, 8), (50, 10, 21, 7), (23, 20, 2, 64), (41, 9, 5, 41)])
def test_weights_match_brute_force(M, L, q, chunk):
    X = family(np.random.default_rng(M * L), M, L, q)
    X[3] = X[0]  # an exact duplicate
    X[[5, 8, 9]] = X[1]  # and three copies of another (weights are computed on distinct rows)
    for threshold in (0.3, 0.5, 0.7, 0.8, 1.0):
        w = np.asarray(sequence_weights(X, threshold, chunk_size=chunk))
        np.testing.assert_allclose(w, brute_force_weights(X, threshold), rtol=1e-6)


def test_weights_threshold_exactly_on_a_count():
    # L = 10: identity 3/10 must count at threshold 0.3 (0.3 * 10 is 3.0000000000000004 in floats).
    X = np.zeros((2, 10), np.int32)
    X[1, 3:] = 1
    np.testing.assert_allclose(sequence_weights(X, 0.3, chunk_size=1), [0.5, 0.5])
    np.testing.assert_allclose(sequence_weights(X, 0.31, chunk_size=1), [1.0, 1.0])


def test_weights_inputs_and_effective_number(tmp_path):
    aln = read_alignment(write(tmp_path, "f.fasta", FILTER_TEXT))
    w = sequence_weights(aln, 0.8)  # an Alignment is accepted
    np.testing.assert_allclose(w, brute_force_weights(aln.seqs, 0.8), rtol=1e-6)
    assert float(msa.effective_number(w)) == pytest.approx(float(np.sum(brute_force_weights(aln.seqs, 0.8))))
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        sequence_weights(aln.seqs, 0.0)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        sequence_weights(aln.seqs, 1.2)
    with pytest.raises(TypeError, match="integer colours"):
        sequence_weights(aln.seqs.astype(float))
    with pytest.raises(ValueError, match="outside"):
        sequence_weights(-aln.seqs - 1)
    with pytest.raises(ValueError, match=r"shape \(M, L\)"):
        sequence_weights(aln.seqs[0])
    with pytest.raises(ValueError, match="chunk_size"):
        sequence_weights(aln.seqs, chunk_size=0)


def test_check_weights_rejects_bad_weights():
    ok = msa.check_weights(np.ones(3), 3)
    assert ok.shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        msa.check_weights(np.ones(4), 3)
    with pytest.raises(ValueError, match="non-finite"):
        msa.check_weights(np.array([1.0, np.nan, 1.0]), 3)
    with pytest.raises(ValueError, match="non-negative"):
        msa.check_weights(np.array([1.0, -0.1, 1.0]), 3)
    with pytest.raises(ValueError, match="sum to zero"):
        msa.check_weights(np.zeros(3), 3)


# ----------------------------------------------------------------------------- real families


@needs_pfam
def test_pf00014_reference_numbers():
    aln = read_alignment(PFAM / "PF00014.fasta")  # A2M style, wrapped lines
    assert (aln.M, aln.L) == (4915, 53)
    # CCMpred / plmc / adabmDCA report M_eff(0.8) = 2051 on this family.
    assert float(msa.effective_number(sequence_weights(aln.seqs, 0.8))) == pytest.approx(2051.17, abs=0.05)


@needs_pfam
@pytest.mark.slow
def test_pf00763_reference_numbers():
    aln = read_alignment(PFAM / "PF00763.fasta")
    assert (aln.M, aln.L) == (11418, 116)
    assert float(msa.effective_number(sequence_weights(aln.seqs, 0.8))) == pytest.approx(5211.27, abs=0.05)


def test_merge_duplicates_keeps_every_weighted_sum():
    import jax

    from jaxpotts.losses import pseudo_likelihood
    from jaxpotts.potts import random_dense_potts

    rng = np.random.default_rng(4)
    base = rng.integers(0, 3, (6, 5))
    picks = rng.integers(0, 6, 40)  # 40 rows, many copies of 6 sequences
    seqs, w = base[picks], rng.uniform(0.1, 1.0, 40)
    u, wu = msa.merge_duplicates(seqs, w)
    # first occurrences, in their original order, each with the sum of its copies' weights
    order = [int(p) for i, p in enumerate(picks) if p not in picks[:i]]
    np.testing.assert_array_equal(u, base[order])
    np.testing.assert_allclose(wu, [w[picks == p].sum() for p in order])
    assert u.dtype == np.int32 and abs(wu.sum() - w.sum()) < 1e-12
    model = random_dense_potts(jax.random.PRNGKey(0), 5, 3)
    np.testing.assert_allclose(pseudo_likelihood(model, u, wu), pseudo_likelihood(model, seqs, w), rtol=1e-6)
    u1, w1 = msa.merge_duplicates(seqs)  # unit weights: the copy counts
    np.testing.assert_array_equal(w1, [np.sum(picks == p) for p in order])
    with pytest.raises(ValueError, match="shape"):
        msa.merge_duplicates(np.zeros((0, 5), int))
    with pytest.raises(ValueError):
        msa.merge_duplicates(seqs, -w)

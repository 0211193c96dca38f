"""Focus-sequence alignments (jaxpotts.msa.read_focus_alignment): columns, numbering, mapping."""

from pathlib import Path

import numpy as np
import pytest

from jaxpotts import msa
from jaxpotts.msa import FocusAlignment, read_alignment, read_focus_alignment, sequence_weights

DMS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dms" / "DYR_ECOLI_Thompson_2019"
needs_dms = pytest.mark.skipif(not (DMS / "DHFR.a2m").exists(), reason="shared/data/dms not present")

# Focus F/10-16: residues A10 C11 D12 E13 f14 (insertion) G15 H16; a focus gap at match column 2.
A2M = """>F/10-16 the focus
AC-DEfGH
>s2
ACWDE.GH
>s3
-CWDEkkGY
"""


def write(tmp_path, text, name="x.a2m"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_focus_columns_numbering_and_mapping(tmp_path):
    path = write(tmp_path, A2M)
    aln = read_focus_alignment(path)
    assert isinstance(aln, FocusAlignment)
    f = aln.focus
    assert (f.name, f.row, f.start, f.end) == ("F/10-16", 0, 10, 16)
    assert f.full_sequence == "ACDEFGH"
    assert f.letters == "ACDEGH" and aln.L == 6 == f.L
    np.testing.assert_array_equal(f.residues, [10, 11, 12, 13, 15, 16])
    np.testing.assert_array_equal(aln.columns, [0, 1, 3, 4, 5, 6])  # file match column of each site
    full = read_alignment(path)
    assert full.L == 7
    np.testing.assert_array_equal(aln.seqs, full.seqs[:, aln.columns])
    assert aln.alphabet.decode(aln.wild_type) == "ACDEGH"
    assert aln.alphabet.decode(aln.seqs[2]) == "-CDEGY"
    # residue number <-> site
    np.testing.assert_array_equal(f.sites([10, 16, 15, 12]), [0, 5, 4, 2])
    assert f.site(13) == 3 and f.residue(4) == 15
    assert f.wild_type_letter(14) == "F"  # an insertion residue still has its number
    with pytest.raises(ValueError, match="residue 14 .* is not a model site"):
        f.site(14)
    with pytest.raises(ValueError, match="residue 17 is outside .* 10..16"):
        f.sites([10, 17])
    with pytest.raises(ValueError, match="site must be"):
        f.residue(6)
    seqs, alphabet = aln  # still unpacks like an Alignment
    assert seqs.shape == (3, 6)
    assert sequence_weights(aln).shape == (3,)


def test_keep_focus_gaps_and_other_focus_choices(tmp_path):
    path = write(tmp_path, A2M)
    kept = read_focus_alignment(path, keep_focus_gaps=True)
    assert kept.L == 7 and kept.focus.letters == "AC-DEGH"
    np.testing.assert_array_equal(kept.focus.residues, [10, 11, -1, 12, 13, 15, 16])
    assert kept.focus.residue(2) == -1
    # focus by name (whole or before '/') or by index; numbering without a range starts at 1
    assert read_focus_alignment(path, "F").focus.name == "F/10-16"
    assert read_focus_alignment(path, "F/10-16").focus.row == 0
    other = read_focus_alignment(path, 1)
    assert other.focus.name == "s2" and other.focus.start == 1 and other.L == 7
    assert other.focus.full_sequence == "ACWDEGH"
    assert read_focus_alignment(path, "s3").focus.letters == "CWDEGY"  # its own gap column dropped
    assert read_focus_alignment(path, "s3").focus.full_sequence == "CWDEKKGY"
    assert read_focus_alignment(path, start=100).focus.residues[0] == 100
    with pytest.raises(ValueError, match="no sequence named 'nope'"):
        read_focus_alignment(path, "nope")
    with pytest.raises(ValueError, match="out of range"):
        read_focus_alignment(path, 3)
    with pytest.raises(ValueError, match="removed by the sequence filters"):
        read_focus_alignment(path, 2, max_gap_fraction=0.0)


def test_focus_range_must_match_the_residues(tmp_path):
    path = write(tmp_path, A2M.replace("F/10-16", "F/10-20"))
    with pytest.raises(ValueError, match="says residues 10-20 .* has 7"):
        read_focus_alignment(path)
    assert read_focus_alignment(path, start=3).focus.end == 9


def test_focus_in_stockholm_and_column_filters(tmp_path):
    sto = "# STOCKHOLM 1.0\nF/5-9  AC-DEF\ns2     ACWD-F\ns3     -C-D-F\n//\n"
    path = write(tmp_path, sto, "x.sto")
    aln = read_focus_alignment(path)
    assert aln.focus.letters == "ACDEF"
    np.testing.assert_array_equal(aln.focus.residues, [5, 6, 7, 8, 9])
    # a column filter that removes column 4 (E8) leaves residue 8 without a site
    filt = read_focus_alignment(path, max_column_gap_fraction=0.5)
    np.testing.assert_array_equal(filt.focus.residues, [5, 6, 7, 9])
    with pytest.raises(ValueError, match="residue 8 .* not a model site"):
        filt.focus.site(8)


@needs_dms
def test_dhfr_focus_is_the_dms_wild_type():
    aln = read_focus_alignment(DMS / "DHFR.a2m")
    assert aln.n_columns == 171 and aln.L == 159  # 12 focus-gap columns dropped
    assert aln.focus.name == "DYR_ECOLI/1-159"
    np.testing.assert_array_equal(aln.focus.residues, np.arange(1, 160))
    wt = "".join((DMS / "DYR_ECOLI_Thompson_plusLon_2019.fasta").read_text().splitlines()[1:]).strip()
    assert len(wt) == 159 and aln.focus.letters == wt == aln.alphabet.decode(aln.wild_type)


def test_unknown_drop_never_drops_the_focus(tmp_path):
    # X in s2 (a match column) is dropped with its sequence; the focus row index follows.
    text = ">s0\nAXDEGH\n>F/1-6\nACDEGH\n>s2\nACDEGY\n"
    with pytest.warns(UserWarning, match="dropped 1 of 3 sequences"):
        aln = read_focus_alignment(write(tmp_path, text), "F", unknown="drop")
    assert aln.M == 2 and aln.focus.row == 0 and aln.names == ("F/1-6", "s2")
    assert aln.alphabet.decode(aln.wild_type) == "ACDEGH"
    # A focus holding an unknown letter: read as a gap by default, an error (not a silent drop) with "drop".
    bad = ">F/1-6\nACXEGH\n>s2\nACDEGY\n>s3\nACDEGH\n"
    with pytest.warns(UserWarning, match="1 unknown letter"):
        assert read_focus_alignment(write(tmp_path, bad)).M == 3
    with (
        pytest.warns(UserWarning, match="dropped 1 of 3"),
        pytest.raises(
            ValueError, match=r"the focus sequence 'F/1-6' holds unknown letter\(s\) \['X'\] and unknown='drop'"
        ),
    ):
        read_focus_alignment(write(tmp_path, bad), unknown="drop")


@needs_dms
def test_dhfr_unknown_drop_removes_plmcs_13_sequences():
    """plmc's validity filter keeps 3616 of the 3629 DHFR sequences: the 13 holding the 18 X."""
    with pytest.warns(UserWarning, match=r"dropped 13 of 3629 sequences .*18 letter\(s\): 'X' x18"):
        aln = read_focus_alignment(DMS / "DHFR.a2m", unknown="drop")
    assert aln.M == 3616 and aln.L == 159 and aln.focus.row == 0
    assert not np.isin(aln.rows, [123]).any()  # UniRef100_UPI000188C0E8, the first with an X


def test_focus_alignment_reads_and_parses_the_file_once(tmp_path, monkeypatch):
    """The focus's row (for its numbering and gap columns) comes from the same parse as the
    alignment: the file is read once and gives the same result as a separate read."""
    path = write(tmp_path, A2M)
    calls = []
    real = msa._read_text
    monkeypatch.setattr(msa, "_read_text", lambda p: calls.append(p) or real(p))
    aln = msa.read_focus_alignment(path)
    assert len(calls) == 1
    plain = read_alignment(path)
    np.testing.assert_array_equal(aln.seqs, plain.seqs[:, aln.columns])
    assert aln.focus.letters == "ACDEGH" and list(aln.focus.residues) == [10, 11, 12, 13, 15, 16]

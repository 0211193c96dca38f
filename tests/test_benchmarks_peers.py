"""benchmarks/peers/c_tools.py and the panel's --peers, with fake CCMpred and plmc executables.

The fakes are small Python scripts named ``ccmpred`` and ``plmc`` put first on PATH. Each parses
its command line and reads its input the way the real tool does (CCMpred ``src/ccmpred.c``,
``src/sequence.c``: options then ``input.aln output.mat``, PSICOV lines, '>' refused with exit
100; plmc ``src/main.c``, ``src/plm.c``: flags anywhere, the alignment last, FASTA, focus
columns and numbering from ``NAME/start-end``) and writes its output format (CCMpred: an L x L
matrix, ``%.20e\\t`` per entry and a ``#>META>`` line without newline; plmc: ``%d %c %d %c 0 %f``
per pair i < j in site order). Their "couplings" are a stand-in statistic, the fraction of
sequences with the same symbol in columns i and j, which the tests compute directly from the
alignment as jaxpotts reads it, so reading, numbering and scoring are checked against an
independent computation. Each fake records its arguments and its input in a JSON log.
"""

import dataclasses
import json
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

from jaxpotts import contacts, msa

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.filterwarnings("ignore:.*unknown letter")  # the toy's X, read as a gap on purpose


c_tools = load_script("c_tools", BENCHMARKS / "peers" / "c_tools.py")
panel = load_script("panel", BENCHMARKS / "panel.py")

_COMMON = """
import json, os, sys
CODES = "-ACDEFGHIKLMNPQRSTVWY"

def identity(rows, L):
    # the fakes' stand-in couplings: fraction of sequences with equal symbols in columns i, j
    S = [[0.0] * L for _ in range(L)]
    for i in range(L):
        for j in range(L):
            if i != j:
                S[i][j] = sum(r[i] == r[j] for r in rows) / len(rows)
    return S

def log(tool, argv, text):
    with open(os.path.join(os.environ["FAKE_PEER_LOG"], tool + ".json"), "w") as fh:
        json.dump({"argv": argv, "input": text}, fh)
    if os.environ.get("FAKE_PEER_FAIL"):
        sys.exit(3)
"""

FAKE_CCMPRED = (
    _COMMON
    + """
WITH_ARG = set("rinwkelt")  # CCMpred built with OpenMP: r:i:n:w:k:e:l:ARh? plus t:
argv, args, k = sys.argv[1:], [], 0
while k < len(argv):
    a = argv[k]
    if a.startswith("-") and len(a) > 1:
        if a[1] in WITH_ARG:
            k += 1 if len(a) > 2 else 2
            continue
        if a[1] not in "AR":
            print("Usage: ccmpred [options] input.aln output.mat"); sys.exit(1)
    else:
        args.append(a)
    k += 1
if len(args) != 2:
    print("Usage: ccmpred [options] input.aln output.mat"); sys.exit(1)
text = open(args[0]).read()
log("ccmpred", argv, text)
lines = [l.rstrip() for l in text.splitlines()]
if any(">" in l for l in lines):
    print("ERROR: The alignment file seems to be in a3m or fasta format!"); sys.exit(100)
L = max(len(l) for l in lines)
# aatoi: not a letter, or B J O U X Z: gap; lower case read as upper case
rows = [[c.upper() if c.isalpha() and c.upper() in CODES else "-" for c in l.ljust(L)] for l in lines]
S = identity(rows, L)
with open(args[1], "w") as out:
    for row in S:
        out.write("".join("%.20e\\t" % v for v in row) + "\\n")
    out.write('#>META> {"method":"ccmpred"}')
print("Output can be found in " + args[1])
"""
)

FAKE_PLMC = (
    _COMMON
    + """
argv = sys.argv[1:]
opts, k = {}, 0
while k < len(argv) - 1:  # plmc reads options up to the last argument, the alignment
    a = argv[k]
    if a in ("-c", "-o", "-a", "-lh", "-le", "-lg", "-t", "-s", "-m", "-f", "-w", "-n"):
        opts[a] = argv[k + 1]; k += 2
    else:
        opts[a] = True; k += 1
text = open(argv[-1]).read()
log("plmc", argv, text)
names, seqs = [], []
for line in text.splitlines():
    if line.startswith(">"):
        names.append(line[1:]); seqs.append("")
    else:
        seqs[-1] += line.strip()
if len({len(s) for s in seqs}) != 1:
    sys.stderr.write("Incompatible sequence length\\n"); sys.exit(1)
def code(c):  # MSAReadCode: '.' is '-'; lower case kept apart; out of alphabet: invalid
    c = "-" if c == "." else c
    return c if c.upper() in CODES else None
enc = [[code(c) for c in s] for s in seqs]
valid = [k for k, r in enumerate(enc) if None not in r]
sys.stderr.write("%d valid sequences out of %d \\n" % (len(valid), len(seqs)))
n = len(seqs[0])
sites, target, left = list(range(n)), None, 0
if "-f" in opts:
    target = next(k for k, nm in enumerate(names) if nm.startswith(opts["-f"]))
    sys.stderr.write("Found focus %s as sequence %d\\n" % (opts["-f"], target + 1))
    sites = [i for i in range(n) if seqs[target][i].isupper() and seqs[target][i] != "-"]
    sys.stderr.write("%d sites out of %d\\n" % (len(sites), n))
    name = names[target]
    if name[len(opts["-f"]):].startswith("/"):
        tail = name[len(opts["-f"]) + 1:]
        digits = tail[: len(tail) - len(tail.lstrip("0123456789"))]
        left = int(digits) - 1
        sys.stderr.write("Region starts at %d\\n" % (left + 1))
rows = [[enc[k][i].upper() for i in sites] for k in valid]
S = identity(rows, len(sites))
sys.stderr.write("Effective number of samples: %.1f\\nGradient optimization: Converged\\n" % len(valid))
with open(opts["-c"], "w") as out:
    for a in range(len(sites) - 1):
        for b in range(a + 1, len(sites)):
            if target is None:
                out.write("%d - %d - 0 %f\\n" % (a + 1, b + 1, S[a][b]))
            else:
                ai, bj = seqs[target][sites[a]], seqs[target][sites[b]]
                out.write("%d %c %d %c 0 %f\\n" % (sites[a] + 1 + left, ai, sites[b] + 1 + left, bj, S[a][b]))
"""
)


def _install(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(source))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def empty_path(tmp_path, monkeypatch):
    """An empty folder alone on PATH, the fakes' log folder, no JAXPOTTS_* overrides."""
    bin_dir, logs = tmp_path / "bin", tmp_path / "logs"
    bin_dir.mkdir()
    logs.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_PEER_LOG", str(logs))
    for var in c_tools.ENV.values():
        monkeypatch.delenv(var, raising=False)
    return bin_dir, logs


@pytest.fixture
def fakes(empty_path):
    """The fake ``ccmpred`` and ``plmc`` on PATH."""
    _install(empty_path[0], "ccmpred", FAKE_CCMPRED)
    _install(empty_path[0], "plmc", FAKE_PLMC)
    return empty_path


def _toy(tmp_path: Path, focus: bool = False) -> Path:
    """An A2M file, 16 sequences x 13 match columns: random letters with column 7 a copy of
    column 1 and column 11 of column 3, an X (read as a gap), an insert column (lower case and
    '.'). With `focus`: the first row is FOC/5-17 with a gap in match column 9 and a residue in
    the insert column."""
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY-"))
    rows = rng.choice(letters, size=(16, 13))
    rows[:, 7], rows[:, 11] = rows[:, 1], rows[:, 3]
    rows[2, 5] = "X"
    lines = []
    for k, r in enumerate(rows):
        ins = "."
        if focus and k == 0:
            r[:] = rng.choice(letters[:-1], size=13)
            r[9], ins = "-", "k"
        elif k % 3 == 0:
            ins = "m"
        name = "FOC/5-17" if focus and k == 0 else f"S{k}/1-14"
        lines.append(f">{name}\n{''.join(r[:4])}{ins}{''.join(r[4:])}\n")
    path = tmp_path / "toy.a2m"
    path.write_text("".join(lines))
    return path


def _direct(aln) -> np.ndarray:
    """The fakes' statistic from jaxpotts' colours: fraction of rows with a_i == a_j, zero diagonal."""
    s = np.asarray(aln.seqs)
    S = (s[:, :, None] == s[:, None, :]).mean(axis=0)
    np.fill_diagonal(S, 0.0)
    return S


def _distances(L: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    D = rng.uniform(3.0, 14.0, size=(L, L))
    D = np.triu(D, 1) + np.triu(D, 1).T
    D[0, 9] = D[9, 0] = np.nan  # unknown distance: left out
    return D


def _panel_precision(aln, S, D) -> dict:
    """How the panel scores jaxpotts: `ContactPrediction.precision` of the same scores."""
    fields = {f.name: None for f in dataclasses.fields(contacts.ContactPrediction)}
    res = contacts.ContactPrediction(**{**fields, "scores": S, "alignment": aln})
    return res.precision(D)


def test_ccmpred_command_input_matrix_and_precision(fakes, tmp_path):
    _, logs = fakes
    aln = msa.read_alignment(_toy(tmp_path))
    exe = c_tools.executable("ccmpred")
    assert exe == str(fakes[0] / "ccmpred")
    res = c_tools.run_tool("ccmpred", exe, aln, threads=3)
    log = json.loads((logs / "ccmpred.json").read_text())
    # CCMpred's defaults: only -t THREADS, then input.aln output.mat
    assert log["argv"][:2] == ["-t", "3"] and len(log["argv"]) == 4
    assert log["argv"][2].endswith(".aln") and log["argv"][3].endswith(".mat")
    assert res["command"] == [exe, *log["argv"]]
    # PSICOV input: the match columns, one sequence per line, no headers, X as '-'
    seqs = log["input"].splitlines()
    assert len(seqs) == 16 and all(len(s) == 13 and ">" not in s for s in seqs)
    assert seqs[2][5] == "-" and seqs[0] == msa.PROTEIN.decode(aln.seqs[0])
    S = res["scores"]
    assert S.shape == (13, 13)
    np.testing.assert_array_equal(S, _direct(aln))
    assert S[1, 7] == 1.0 and S[3, 11] == 1.0  # the planted copies
    D = _distances(13)
    assert c_tools.score(S, D) == _panel_precision(aln, _direct(aln), D)
    assert res["seconds"] > 0


@pytest.mark.parametrize("L", [13, 53, 406])
def test_plmc_lambda_e_is_evcouplings_rule(L):
    """EVcouplings: lambda_J = 0.01 (q - 1)(L - 1) with q = 21 - 1 symbols (gaps ignored)."""
    assert c_tools.plmc_lambda_e(L) == pytest.approx(0.01 * 19 * (L - 1))
    assert c_tools.plmc_lambda_e(L, ignore_gaps=False) == pytest.approx(0.2 * (L - 1))


def test_plmc_command_pairs_and_precision(fakes, tmp_path):
    _, logs = fakes
    aln = msa.read_alignment(_toy(tmp_path))
    res = c_tools.run_tool("plmc", c_tools.executable("plmc"), aln, threads=2)
    argv = json.loads((logs / "plmc.json").read_text())["argv"]
    assert argv[0] == "-c" and argv[1].endswith(".ec") and argv[-1].endswith(".fasta")
    assert argv[2:-1] == ["-g", "-m", "100", "-t", "0.2", "-lh", "0.01", "-le", "2.28", "-n", "2"]  # 0.19 * 12
    assert "-f" not in argv
    np.testing.assert_allclose(res["scores"], _direct(aln), atol=5e-7)  # plmc writes %f
    D = _distances(13)
    assert c_tools.score(res["scores"], D) == _panel_precision(aln, _direct(aln), D)


def test_plmc_focus_mode_numbering(fakes, tmp_path):
    """With a focus: -f NAME (before '/'), the focus first in the FASTA, plmc's numbers
    (column + start, start from FOC/5-17) mapped back to the focus alignment's sites."""
    _, logs = fakes
    aln = msa.read_focus_alignment(_toy(tmp_path, focus=True))
    assert aln.L == 12  # the focus gap column is not a site
    res = c_tools.run_tool("plmc", c_tools.executable("plmc"), aln, threads=1)
    log = json.loads((logs / "plmc.json").read_text())
    argv = log["argv"]
    assert argv[argv.index("-f") + 1] == "FOC"
    assert argv[argv.index("-le") + 1] == "2.09"  # 0.19 * 11
    assert log["input"].startswith(">FOC/5-17\n")
    np.testing.assert_allclose(res["scores"], _direct(aln), atol=5e-7)
    D = _distances(12)
    assert c_tools.score(res["scores"], D) == _panel_precision(aln, _direct(aln), D)


def test_plmc_focus_with_a_letter_read_as_gap_is_refused(fakes, tmp_path):
    path = _toy(tmp_path, focus=True)
    lines = path.read_text().splitlines()
    lines[1] = "X" + lines[1][1:]  # the focus's first residue: unknown, read as a gap
    path.write_text("\n".join(lines) + "\n")
    aln = msa.read_focus_alignment(path)
    with pytest.raises(ValueError, match="read as gaps"):
        c_tools.run_tool("plmc", c_tools.executable("plmc"), aln, threads=1)


def test_ec_matrix_refuses_incomplete_or_wrongly_numbered_output():
    ec = dict(i=np.array([1, 1, 2]), j=np.array([2, 3, 3]), score=np.array([0.5, 0.25, 0.125]))
    S = c_tools.ec_matrix(ec, 3)
    np.testing.assert_array_equal(S, [[0, 0.5, 0.25], [0.5, 0, 0.125], [0.25, 0.125, 0]])
    with pytest.raises(ValueError, match="pairs outside"):
        c_tools.ec_matrix(ec, 3, start=2)
    with pytest.raises(ValueError, match="expected each of the 6 pairs"):
        c_tools.ec_matrix(ec, 4)


def test_absent_tools_are_skipped_with_a_note(empty_path, tmp_path, monkeypatch, capsys):
    assert c_tools.executable("ccmpred") is None and c_tools.executable("plmc") is None
    assert c_tools.skip_note("ccmpred") == "ccmpred not on PATH: skipped; set JAXPOTTS_CCMPRED"
    # JAXPOTTS_PLMC names the tool wherever it is; a name that is nowhere is "absent"
    other = _install(tmp_path, "my-plmc-build", FAKE_PLMC)
    monkeypatch.setenv("JAXPOTTS_PLMC", str(other))
    monkeypatch.setenv("JAXPOTTS_CCMPRED", str(tmp_path / "missing"))
    assert c_tools.executable("plmc") == str(other) and c_tools.executable("ccmpred") is None

    fasta = _toy(tmp_path)
    dist = tmp_path / "toy.dat"
    D = _distances(13)
    dist.write_text(
        "".join(f"{i + 1} {j + 1} {D[i, j]}\n" for i in range(13) for j in range(i + 1, 13) if np.isfinite(D[i, j]))
    )
    monkeypatch.setattr(panel, "FAMILIES", {"TOY": (fasta, dist)})
    out = tmp_path / "panel.json"
    report = panel.run_peers(panel._load(out), ["TOY"], c_tools.parse_peers("auto"), out)
    stored = json.loads(out.read_text())
    assert stored["peer_notes"] == {"ccmpred": f"ccmpred not found at JAXPOTTS_CCMPRED={tmp_path / 'missing'}: skipped"}
    assert [(r["family"], r["tool"]) for r in stored["peers"]] == [("TOY", "plmc")]
    aln = msa.read_alignment(fasta)
    expected = _panel_precision(aln, _direct(aln), contacts.read_distances(dist, L=13))
    assert stored["peers"][0]["ppv"] == pytest.approx(expected)
    panel.print_report(report, [])
    printed = capsys.readouterr().out
    assert stored["peer_notes"]["ccmpred"] in printed
    assert "| TOY " in printed and "ccmpred (issue 15)" in printed
    # a second run measures nothing again (resumable); without the variable the note says PATH
    monkeypatch.delenv("JAXPOTTS_CCMPRED")
    panel.run_peers(report, ["TOY"], ("ccmpred", "plmc"), out)
    stored = json.loads(out.read_text())
    assert len(stored["peers"]) == 1
    assert stored["peer_notes"] == {"ccmpred": "ccmpred not on PATH: skipped; set JAXPOTTS_CCMPRED"}


def test_a_failing_tool_raises_with_its_output(fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_PEER_FAIL", "1")
    aln = msa.read_alignment(_toy(tmp_path))
    with pytest.raises(RuntimeError, match="ccmpred failed \\(exit 3\\)"):
        c_tools.run_tool("ccmpred", c_tools.executable("ccmpred"), aln, threads=1)


def test_parse_peers():
    assert c_tools.parse_peers("auto") == ("ccmpred", "plmc")
    assert c_tools.parse_peers("none") == ()
    assert c_tools.parse_peers("plmc") == ("plmc",)
    assert c_tools.parse_peers("ccmpred, plmc") == ("ccmpred", "plmc")
    for bad in ("gremlin", "", "ccmpred,psicov"):
        with pytest.raises(ValueError, match="--peers"):
            c_tools.parse_peers(bad)
    with pytest.raises(SystemExit):
        panel.main(["--peers", "gremlin", "--report"])

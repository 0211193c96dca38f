r"""The C peers CCMpred and plmc, run on a family in the same benchmark run when they are installed.

Used by ``benchmarks/panel.py --peers``; importable on its own (numpy and ``jaxpotts.contacts``).
Neither tool is built or shipped here: a tool is used when it is on PATH (``ccmpred``,
``plmc``) or named by ``JAXPOTTS_CCMPRED`` / ``JAXPOTTS_PLMC`` (a path or a command name);
otherwise the benchmark prints and stores `skip_note` and goes on.

Input. Both tools get the sequences exactly as jaxpotts reads them (`jaxpotts.msa.read_alignment`:
the match columns of the file, insertions dropped, X/B/Z/J read as the gap '-', upper case), so
every tool fits the same M x L alignment and the distance file indexes the same L sites:

* CCMpred (soedinglab/CCMpred, ``src/sequence.c: read_msa``): PSICOV format, one aligned
  sequence per line, no headers (it stops with "seems to be in a3m or fasta format" on a '>').
* plmc (debbiemarkslab/plmc, ``src/plm.c``): FASTA, one ``>name`` line and one sequence line
  per sequence; the focus sequence (when the alignment is a `jaxpotts.msa.FocusAlignment`)
  first, as EVcouplings writes it.

Settings: each tool's own documented contact-prediction settings.

* CCMpred: its defaults (``src/ccmpred.c``): ``ccmpred -t THREADS input.aln output.mat``, i.e.
  identity threshold 0.8, $\lambda_\mathrm{single} = 0.01$, $\lambda_\mathrm{pair} = 0.2 (L-1)$
  on the weighted sum, at most 250 conjugate-gradient iterations, APC on. ``-t`` exists when
  CCMpred is built with OpenMP (its CMake default).
* plmc as EVcouplings runs it for contacts (``config/sample_config_monomer.txt``, couplings
  ``protocol: standard``; ``evcouplings/couplings/protocol.py`` and ``tools.py: run_plmc``):
  ``plmc -c ECFILE [-f FOCUS] -g -m 100 -t 0.2 -lh 0.01 -le LAMBDA_E -n THREADS ALIGNMENT``
  with $\theta = 0.8$ (plmc's ``-t`` is $1-\theta$), gaps as missing data (``ignore_gaps``,
  ``-g``), 100 iterations, $\lambda_h = 0.01$ and $\lambda_J = 0.01\,(q-1)(L-1)$
  (``lambda_J_times_Lq``) with q = 20 symbols once the gap is ignored (21 - 1), so
  $\lambda_e = 0.19 (L-1)$ for proteins. ``-f FOCUS`` (the focus name before '/', as
  EVcouplings passes it) only when the alignment has a focus; ``-n`` needs plmc built with
  OpenMP (``make all-openmp``).

Output. CCMpred writes the (L, L) APC-corrected matrix (``%.20e\t`` per entry, one row per line,
possibly a ``#>META>`` line): read by `jaxpotts.contacts.read_ccmpred`. plmc writes one line per
pair i < j, ``i A_i j A_j 0 score`` (``%d %c %d %c 0 %f``; ``-`` for the letters without a
focus): read by `jaxpotts.contacts.read_ec`. Its numbers are 1-based columns of its input, or in
focus mode ``column + start`` where the focus is named ``NAME/start-end`` (plmc's ``offsets``),
mapped back to sites here. Scores are ranked and counted with the package's own
`jaxpotts.contacts.precision_at` and `contact_map` (distance < 8 A, |i - j| >= 5, unknown
distances left out), exactly as the panel scores jaxpotts. ``seconds``: the tool's process,
from start to exit (writing its input is not counted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = ("ccmpred", "plmc")
ENV = {"ccmpred": "JAXPOTTS_CCMPRED", "plmc": "JAXPOTTS_PLMC"}

# The peers' figures on this 2-core machine (2 threads), measured by the issue's author (issue 15):
# PPV@L/5, L/2, L and wall time where given. The one table: benchmarks/panel.py and
# benchmarks/contacts.py print it, tests/test_panel.py checks the targets against it.
REFERENCE = {
    "PF00014": {
        "ccmpred": dict(ppv={"L/5": 1.000, "L/2": 1.000, "L": 0.925}, seconds=4.8),
        "plmc": dict(ppv={"L/5": 1.000, "L/2": 1.000, "L": 0.906}, seconds=30.0),
    },
    "PF00763": {
        "ccmpred": dict(ppv={"L/5": 1.000, "L/2": 1.000, "L": 0.974}, seconds=68.6),
        "plmc": dict(ppv={"L": 0.991}, seconds=None),
    },
}

# plmc as EVcouplings' standard couplings protocol runs it (sample_config_monomer.txt).
EVCOUPLINGS_PLMC = dict(theta=0.8, ignore_gaps=True, iterations=100, lambda_h=0.01, lambda_J=0.01)
PROTEIN_SYMBOLS = "-ACDEFGHIKLMNPQRSTVWY"


def skip_note(tool: str) -> str:
    """The note printed and stored when `tool` is not installed (or `ENV` names nothing)."""
    named = os.environ.get(ENV[tool])
    if named:
        return f"{tool} not found at {ENV[tool]}={named}: skipped"
    return f"{tool} not on PATH: skipped; set {ENV[tool]}"


def executable(tool: str) -> str | None:
    """Path of `tool`: ``$JAXPOTTS_CCMPRED`` / ``$JAXPOTTS_PLMC`` when set (a path or a name on
    PATH), else ``tool`` on PATH; None when there is none."""
    if tool not in ENV:
        raise ValueError(f"unknown peer {tool!r}: one of {', '.join(TOOLS)}")
    return shutil.which(os.environ.get(ENV[tool]) or tool)


def parse_peers(spec: str) -> tuple[str, ...]:
    """``--peers`` of the panel: "auto" (every tool, those installed run), "none", or a comma list."""
    if spec == "auto":
        return TOOLS
    if spec == "none":
        return ()
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    bad = [n for n in names if n not in TOOLS]
    if bad or not names:
        raise ValueError(f"--peers must be auto, none or a comma list of {', '.join(TOOLS)}, got {spec!r}")
    return names


def _letters(aln) -> list[str]:
    """The M sequences as strings of the protein alphabet ('-' for gaps)."""
    symbols = aln.alphabet.symbols
    if symbols != PROTEIN_SYMBOLS:
        raise ValueError(f"the C peers run on protein alignments ({PROTEIN_SYMBOLS}), got symbols {symbols!r}")
    table = np.array(list(symbols))
    return ["".join(row) for row in table[np.asarray(aln.seqs)]]


def write_psicov(aln, path: Path) -> None:
    """CCMpred's input: one aligned sequence per line, no headers."""
    Path(path).write_text("".join(s + "\n" for s in _letters(aln)))


def _focus(aln) -> tuple[int, str, int] | None:
    """(row, name, start) of the alignment's focus sequence, or None; start: the number plmc
    gives its first column."""
    focus = getattr(aln, "focus", None)
    if focus is None:
        return None
    if np.any(np.asarray(focus.residues) < 0):
        raise ValueError(
            f"the focus {focus.name!r} has gaps at kept sites (keep_focus_gaps=True); plmc's -f drops "
            "those columns: read the alignment without keep_focus_gaps"
        )
    if np.any(np.asarray(aln.wild_type) == aln.alphabet.gap_index):
        raise ValueError(
            f"the focus {focus.name!r} has letters read as gaps (X, B, Z, J) at sites: plmc's -f would "
            "drop those columns; replace them in the focus or run without a focus"
        )
    # plmc numbers from the digits after NAME/ in the focus name (plm.c), else from 1.
    tail = focus.name.split("/", 1)[1] if "/" in focus.name else ""
    digits = tail[: len(tail) - len(tail.lstrip("0123456789"))]
    return int(focus.row), focus.name, int(digits) if digits else 1


def write_fasta(aln, path: Path) -> None:
    """plmc's input: FASTA, the focus sequence (if any) first."""
    seqs, names = _letters(aln), [str(n) for n in aln.names]
    order = list(range(len(seqs)))
    focus = _focus(aln)
    if focus is not None:
        order.remove(focus[0])
        order.insert(0, focus[0])
        names[focus[0]] = focus[1]
    Path(path).write_text("".join(f">{names[k] or f'seq{k}'}\n{seqs[k]}\n" for k in order))


def ccmpred_command(exe: str, alignment: Path, matrix: Path, threads: int) -> list[str]:
    """``ccmpred -t THREADS input.aln output.mat`` (CCMpred's defaults otherwise)."""
    return [exe, "-t", str(int(threads)), str(alignment), str(matrix)]


def plmc_lambda_e(L: int, ignore_gaps: bool = EVCOUPLINGS_PLMC["ignore_gaps"]) -> float:
    r"""plmc's ``-le`` as EVcouplings sets it: $\lambda_J (q-1)(L-1)$, q = 21 protein symbols, one
    fewer when gaps are ignored (``lambda_J_times_Lq``, evcouplings/couplings/protocol.py)."""
    q = len(PROTEIN_SYMBOLS) - (1 if ignore_gaps else 0)
    return EVCOUPLINGS_PLMC["lambda_J"] * (q - 1) * (L - 1)


def plmc_command(
    exe: str, alignment: Path, couplings: Path, L: int, threads: int, focus: str | None = None
) -> list[str]:
    """plmc's command line as EVcouplings' ``run_plmc`` assembles it (same flags, same order)."""
    s = EVCOUPLINGS_PLMC
    cmd = [exe, "-c", str(couplings)]
    if focus is not None:
        cmd += ["-f", focus.split("/")[0]]
    if s["ignore_gaps"]:
        cmd += ["-g"]
    cmd += ["-m", str(s["iterations"]), "-t", f"{1.0 - s['theta']:g}", "-lh", str(s["lambda_h"])]
    cmd += ["-le", f"{plmc_lambda_e(L):g}", "-n", str(int(threads)), str(alignment)]
    return cmd


def ec_matrix(ec: dict, L: int, start: int = 1, letters: str | None = None) -> np.ndarray:
    """The symmetric (L, L) scores of a plmc coupling table (`jaxpotts.contacts.read_ec`) whose
    numbers are ``site + start`` (1-based columns: start = 1; focus mode: the focus's start).
    Raises ValueError unless every pair i < j of the L sites is there exactly once (and, with
    `letters`, each pair's letters are the focus letters of its sites)."""
    i, j = ec["i"] - start, ec["j"] - start
    if np.any(i < 0) or np.any(j >= L) or np.any(i >= j):
        raise ValueError(f"plmc pairs outside 0 <= i < j < L = {L} after numbering from {start}")
    if len(i) != L * (L - 1) // 2 or len(np.unique(i * L + j)) != len(i):
        raise ValueError(f"plmc wrote {len(i)} pairs, expected each of the {L * (L - 1) // 2} pairs once")
    if letters is not None:
        a = np.array(list(letters))
        if np.any(a[i] != ec["A_i"]) or np.any(a[j] != ec["A_j"]):
            raise ValueError("plmc's focus letters differ from the alignment's focus sequence")
    S = np.zeros((L, L))
    S[i, j] = S[j, i] = ec["score"]
    return S


def score(scores: np.ndarray, distances: np.ndarray) -> dict[str, float]:
    """PPV@L/5, L/2, L of (L, L) scores against (L, L) distances, as the panel scores jaxpotts
    (`jaxpotts.contacts.precision_at`, `contact_map` at 8 A, |i - j| >= 5, unknown left out)."""
    from jaxpotts.contacts import contact_map, precision_at

    D = np.asarray(distances, dtype=np.float64)
    return precision_at(scores, contact_map(D), known=np.isfinite(D))


def _run(cmd: list[str], tool: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log = (proc.stdout or "") + (proc.stderr or "")
    # plmc may end with SIGSEGV (-11) after writing complete output (EVcouplings' run_plmc
    # accepts it then); the output's own checks (ec_matrix) decide.
    if proc.returncode != 0 and not (tool == "plmc" and proc.returncode == -11):
        raise RuntimeError(f"{tool} failed (exit {proc.returncode}): {' '.join(cmd)}\n{log[-2000:]}")
    return seconds, log


def run_tool(tool: str, exe: str, aln, *, threads: int | None = None) -> dict:
    """Run CCMpred or plmc on an alignment; its scores (L, L), command line and wall time.

    Returns a dict: ``tool``, ``executable``, ``command`` (list of str), ``scores`` (L x L
    numpy, over the alignment's sites), ``seconds`` (the tool's process), ``log_tail``.
    Raises RuntimeError when the tool fails, ValueError when its output is not what it should be.
    """
    from jaxpotts.contacts import read_ccmpred, read_ec

    threads = (os.cpu_count() or 1) if threads is None else threads
    with tempfile.TemporaryDirectory(prefix=f"jaxpotts-{tool}-") as tmp:
        tmp = Path(tmp)
        if tool == "ccmpred":
            write_psicov(aln, tmp / "alignment.aln")
            cmd = ccmpred_command(exe, tmp / "alignment.aln", tmp / "alignment.mat", threads)
            seconds, log = _run(cmd, tool)
            S = read_ccmpred(tmp / "alignment.mat")
            if S.shape != (aln.L, aln.L):
                raise ValueError(f"ccmpred wrote a {S.shape[0]} x {S.shape[1]} matrix for L = {aln.L}")
        elif tool == "plmc":
            focus = _focus(aln)
            write_fasta(aln, tmp / "alignment.fasta")
            cmd = plmc_command(exe, tmp / "alignment.fasta", tmp / "alignment.ec", aln.L, threads, focus and focus[1])
            seconds, log = _run(cmd, tool)
            start, letters = (1, None) if focus is None else (focus[2], aln.focus.letters)
            S = ec_matrix(read_ec(tmp / "alignment.ec"), aln.L, start, letters)
        else:
            raise ValueError(f"unknown peer {tool!r}: one of {', '.join(TOOLS)}")
    return dict(tool=tool, executable=exe, command=cmd, scores=S, seconds=seconds, log_tail=log[-1000:])

r"""Multiple sequence alignments: alphabets, reading, filters and sequence weights.

Reading
    `read_alignment(path)` reads FASTA, A2M/A3M and Stockholm files (gzipped or not, wrapped or
    single-line) and returns an `Alignment` that unpacks as ``seqs, alphabet``: ``seqs`` is an
    int32 array of colours (M, L) over the *match columns* of the alignment.

    Insert convention (A2M/A3M, Pfam FASTA and Stockholm): upper-case letters and '-' are match
    columns; lower-case letters and '.' are insertions relative to the match states and are
    dropped, sequence by sequence, before the alignment is checked for equal lengths. This is
    also how plain aligned FASTA is read (a plain aligned FASTA file has no lower case and no
    '.', so nothing is dropped); pass ``insertions="keep"`` for an alignment written in lower case.

Sequence weights
    The standard DCA reweighting (plmDCA, CCMpred, plmc, adabmDCA):

    $$\mathrm{id}(m, n) = \frac1L \sum_{i=1}^L [s^{(m)}_i = s^{(n)}_i], \qquad
      w_m = \frac{1}{\#\{n : \mathrm{id}(m, n) \ge \theta\}}, \qquad
      M_\mathrm{eff} = \sum_m w_m,$$

    with the default $\theta = 0.8$. The identity is the plain fraction of identical columns
    over all L match columns: a gap facing a gap counts as identical (plmDCA's Hamming-distance
    convention). Sequence m counts itself, so $0 < w_m \le 1$, and exact duplicates share their
    weight. On the Pfam families in ``shared/data/pfam`` this gives M_eff(0.8) = 2051.17
    (PF00014, 4915 sequences, L = 53) and 5211.27 (PF00763, 11418 sequences, L = 116), the
    reference numbers of the C tools.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Scalar

from .losses import check_weights

__all__ = [
    "Alphabet",
    "PROTEIN",
    "RNA",
    "BINARY",
    "Alignment",
    "read_alignment",
    "sequence_weights",
    "effective_number",
    "merge_duplicates",
    "check_weights",
    "Focus",
    "FocusAlignment",
    "read_focus_alignment",
]

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------- alphabets


@dataclasses.dataclass(frozen=True)
class Alphabet:
    r"""An ordered set of one-letter symbols; symbol ``symbols[a]`` is colour ``a``.

    Attributes:
        symbols: the symbols, one character each, in colour order (q = len(symbols)).
        gap: the gap symbol, or None for an alphabet without gaps. Left as None, it is '-'
            when '-' is one of the symbols.
        aliases: extra letters read as one of the symbols (e.g. ``{"T": "U"}`` for RNA), given
            as a mapping or as (letter, symbol) pairs. Aliases are part of the alphabet: they
            are accepted even when reading with ``unknown="error"``.
        name: a label for messages.

    Letters are case sensitive: ``Alphabet("-ACGU")`` does not know 'a'. (In alignments,
    lower-case letters are insertions and are dropped before encoding; see `read_alignment`.)

    Examples:
        >>> Alphabet("-ACGU").q, Alphabet("-ACGU").gap_index
        (5, 0)
        >>> Alphabet("01").gap is None
        True
    """

    symbols: str
    gap: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    name: str = "custom"
    _lut: np.ndarray = dataclasses.field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        symbols = self.symbols
        if not isinstance(symbols, str) or len(symbols) < 2:
            raise ValueError(f"an alphabet needs a string of at least 2 symbols, got {symbols!r}")
        if len(set(symbols)) != len(symbols):
            dup = sorted({c for c in symbols if symbols.count(c) > 1})
            raise ValueError(f"alphabet symbols must be distinct; repeated: {dup}")
        if any(c.isspace() for c in symbols):
            raise ValueError(f"alphabet symbols cannot be white space, got {symbols!r}")
        gap = self.gap
        if gap is None and "-" in symbols:
            gap = "-"
        if gap is not None and gap not in symbols:
            raise ValueError(f"gap symbol {gap!r} is not one of the symbols {symbols!r}")
        aliases = self.aliases
        pairs = tuple(aliases.items()) if isinstance(aliases, Mapping) else tuple(tuple(p) for p in aliases)
        for pair in pairs:
            if len(pair) != 2 or not all(isinstance(c, str) and len(c) == 1 for c in pair):
                raise ValueError(f"aliases must map single letters to single letters, got {pair!r}")
            letter, target = pair
            if letter in symbols:
                raise ValueError(f"alias {letter!r} is already a symbol of the alphabet {symbols!r}")
            if target not in symbols:
                raise ValueError(f"alias {letter!r} -> {target!r}: {target!r} is not a symbol of {symbols!r}")
        if len({p[0] for p in pairs}) != len(pairs):
            raise ValueError("aliases list a letter twice")
        pairs = tuple(sorted(pairs))
        if any(ord(c) >= 256 for c in symbols) or any(ord(p[0]) >= 256 for p in pairs):
            raise ValueError("alphabet symbols and aliases must be 8-bit characters (code point < 256)")
        # Lookup table over code points 0..255: colour, or -1 for an unknown letter.
        lut = np.full(256, -1, dtype=np.int32)
        for a, c in enumerate(symbols):
            lut[ord(c)] = a
        for letter, target in pairs:
            lut[ord(letter)] = symbols.index(target)
        object.__setattr__(self, "gap", gap)
        object.__setattr__(self, "aliases", pairs)
        object.__setattr__(self, "_lut", lut)

    @property
    def q(self) -> int:
        """Number of colours."""
        return len(self.symbols)

    @property
    def gap_index(self) -> int | None:
        """Colour of the gap, or None."""
        return None if self.gap is None else self.symbols.index(self.gap)

    @property
    def index(self) -> dict[str, int]:
        """Letter -> colour, for the symbols and the aliases."""
        out = {c: a for a, c in enumerate(self.symbols)}
        out.update({letter: self.symbols.index(t) for letter, t in self.aliases})
        return out

    def knows(self, letter: str) -> bool:
        """Whether `letter` is a symbol or an alias."""
        return len(letter) == 1 and ord(letter) < 256 and self._lut[ord(letter)] >= 0

    def encode(self, sequence: str) -> Int[np.ndarray, " L"]:
        """Colours of a string of symbols/aliases (no insert handling); unknown letters raise."""
        codes = _code_points(sequence)
        colours = _lookup(self._lut, codes)
        bad = np.flatnonzero(colours < 0)
        if bad.size:
            p = int(bad[0])
            raise ValueError(
                f"letter {sequence[p]!r} at position {p + 1} is not in the {self.name} alphabet {self.symbols!r}"
            )
        return colours

    def decode(self, colours) -> str:
        """The string of symbols of a 1-D array of colours."""
        colours = np.asarray(colours)
        if colours.ndim != 1:
            raise ValueError(f"decode takes one sequence (1-D), got shape {colours.shape}")
        if colours.size and (colours.min() < 0 or colours.max() >= self.q):
            raise ValueError(f"colours must be in 0..{self.q - 1} for the {self.name} alphabet")
        return "".join(self.symbols[int(a)] for a in colours)


#: Protein: gap '-' (colour 0) then the 20 amino acids in alphabetical one-letter order (q = 21).
#: The rare amino acids U (selenocysteine) -> C and O (pyrrolysine) -> K, their closest standard
#: residues (aliases, accepted silently). The ambiguous letters X (unknown), B (D/N), Z (E/Q) and
#: J (I/L) are *not* part of the alphabet: `read_alignment` reads them as gaps, as plmDCA and
#: CCMpred do (this reproduces the C tools' M_eff), with a warning counting them; ``unknown="drop"``
#: drops their sequences (plmc's filter) and ``unknown="error"`` refuses them. A '*' (stop) ending a sequence is dropped; elsewhere it is an error.
#: '.' and lower case are insertions (see `read_alignment`).
PROTEIN = Alphabet(
    "-ACDEFGHIKLMNPQRSTVWY",
    gap="-",
    aliases={"U": "C", "O": "K"},
    name="protein",
)

#: RNA: gap '-' (colour 0) then A, C, G, U (q = 5). T is read as U; the IUPAC ambiguity codes
#: N, R, Y, S, W, K, M, B, D, H, V are read as a gap.
RNA = Alphabet(
    "-ACGU",
    gap="-",
    aliases={"T": "U", **{c: "-" for c in "NRYSWKMBDHV"}},
    name="RNA",
)

#: Binary spins '0', '1' (q = 2), no gap.
BINARY = Alphabet("01", name="binary")

_NAMED_ALPHABETS = {"protein": PROTEIN, "rna": RNA, "binary": BINARY}


def _as_alphabet(alphabet) -> Alphabet:
    if isinstance(alphabet, Alphabet):
        return alphabet
    if isinstance(alphabet, str):
        return _NAMED_ALPHABETS.get(alphabet.lower()) or Alphabet(alphabet)
    raise TypeError(f"alphabet must be an Alphabet or a string of symbols, got {type(alphabet).__name__}")


def _code_points(text: str) -> np.ndarray:
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _lookup(lut: np.ndarray, codes: np.ndarray) -> np.ndarray:
    if codes.dtype == np.uint8:
        return lut[codes]
    out = np.full(codes.shape, -1, dtype=np.int32)
    small = codes < 256
    out[small] = lut[codes[small]]
    return out


# ----------------------------------------------------------------------------- alignment


@dataclasses.dataclass(frozen=True, eq=False)
class Alignment:
    r"""An encoded alignment. Unpacks as ``seqs, alphabet = read_alignment(path)``.

    Attributes:
        seqs: colours, int32 numpy array (M, L), over the kept match columns.
        alphabet: the `Alphabet` used.
        names: sequence names (first word of each FASTA header / Stockholm name), length M.
        columns: for each of the L kept columns, its index (0-based) among the file's match
            columns, so ``columns[i]`` maps site i back to the alignment (and to distance files
            indexed by match column).
        rows: for each of the M kept sequences, its index (0-based) among the file's sequences.
        n_columns: number of match columns in the file (before the column filter).
        n_sequences: number of sequences in the file (before the filters).
    """

    seqs: Int[np.ndarray, "M L"]
    alphabet: Alphabet
    names: tuple[str, ...]
    columns: Int[np.ndarray, " L"]
    rows: Int[np.ndarray, " M"]
    n_columns: int
    n_sequences: int

    def __iter__(self) -> Iterator:
        return iter((self.seqs, self.alphabet))

    @property
    def M(self) -> int:
        return self.seqs.shape[0]

    @property
    def L(self) -> int:
        return self.seqs.shape[1]

    def __repr__(self) -> str:
        return (
            f"Alignment(M={self.M}, L={self.L}, alphabet={self.alphabet.name!r}, "
            f"from {self.n_sequences} sequences x {self.n_columns} match columns)"
        )


_FORMATS = {"fasta": "fasta", "a2m": "fasta", "a3m": "fasta", "stockholm": "stockholm", "sto": "stockholm"}


def read_alignment(
    path: PathLike,
    *,
    alphabet: Alphabet | str = PROTEIN,
    format: str | None = None,
    strict: bool = False,
    unknown: str = "gap",
    insertions: str = "drop",
    max_gap_fraction: float | None = None,
    max_column_gap_fraction: float | None = None,
    remove_duplicates: bool = False,
) -> Alignment:
    r"""Read an aligned FASTA, A2M/A3M or Stockholm file into integer colours.

    Args:
        path: the file; gzip compression is detected from its first bytes, not its name.
        alphabet: an `Alphabet`, a string of symbols (``Alphabet(symbols)``), or one of the
            names "protein", "rna", "binary" (any case) for `PROTEIN`, `RNA`, `BINARY`.
        format: "fasta", "a2m", "a3m" or "stockholm"; None infers it from the content (a
            Stockholm file starts with ``# STOCKHOLM``; FASTA-like files with '>' after optional
            '#' or ';' comment lines, as hhblits A3M files have). FASTA, A2M and A3M are read the
            same way: A3M only omits the '.' of A2M.
        strict: shorthand for ``unknown="error"`` (kept for existing code).
        unknown: what to do with a letter of a match column that is neither a symbol nor an
            alias of the alphabet (X, B, Z, J for proteins). "gap" (default): read it as a gap,
            with one warning counting the letters (plmDCA's and CCMpred's reading; an error if
            the alphabet has no gap). "drop": drop every sequence that holds one, with one
            warning counting the dropped sequences (plmc's reading: its validity filter), before
            the other sequence filters. "error": raise, naming the letter, sequence and column.
        insertions: "drop" (default): lower-case letters and '.' are insertions and are removed
            from each sequence before the lengths are compared (a lower-case letter that is
            itself a symbol or alias of the alphabet is kept). "keep": every column is a match
            column; lower case is read as upper case and '.' as a gap.
        max_gap_fraction: drop sequences whose fraction of gaps over the match columns is
            larger than this (in [0, 1]).
        max_column_gap_fraction: then drop columns whose fraction of gaps over the remaining
            sequences is larger than this.
        remove_duplicates: then drop sequences identical (over the kept columns) to an earlier
            one, keeping the first.

    Returns:
        An `Alignment` (``seqs, alphabet = read_alignment(path)``), with ``names``, the kept
        match ``columns`` and kept ``rows`` to map back to the file.

    Unusual input (docs/inputs.md has the whole catalogue):

    * the file may be gzipped, have Windows (CRLF) or old Mac (CR) line ends, wrapped sequence
      lines, blank lines, a UTF-8 byte-order mark (ignored) or be UTF-16 with a byte-order mark
      (decoded); text that is not UTF-8 is read as Latin-1 (only headers can hold such bytes);
      a file with NUL bytes is refused as binary;
    * unknown letters (not a symbol or alias; for proteins X, B, Z, J and anything else) become
      gaps with one warning that counts them per letter; ``unknown="drop"`` drops their
      sequences instead (warning with the count) and ``unknown="error"`` (or ``strict=True``)
      raises;
    * a '*' (translation stop) as the last character of a sequence is dropped; a '*' anywhere
      else is an error naming the line and column, as is a digit (a numbered sequence line, as
      in GenBank format) unless the alphabet has digits as symbols;
    * FASTA lines starting with ';' are comments.

    Raises:
        ValueError: empty, binary or unreadable file, no sequences, ragged alignment (naming the
            sequence and the two lengths), a digit or an inner '*' (naming line and column),
            unknown letter with ``unknown="error"`` (naming letter, sequence and column), an
            unrecognised format or `unknown` mode, or filters that leave nothing.
    """
    return _read_with_rows(
        path,
        alphabet=alphabet,
        format=format,
        strict=strict,
        unknown=unknown,
        insertions=insertions,
        max_gap_fraction=max_gap_fraction,
        max_column_gap_fraction=max_column_gap_fraction,
        remove_duplicates=remove_duplicates,
    )[0]


def _read_with_rows(
    path: PathLike,
    *,
    alphabet: Alphabet | str = PROTEIN,
    format: str | None = None,
    strict: bool = False,
    unknown: str = "gap",
    insertions: str = "drop",
    max_gap_fraction: float | None = None,
    max_column_gap_fraction: float | None = None,
    remove_duplicates: bool = False,
) -> tuple[Alignment, list[str], list[str]]:
    """`read_alignment`, also returning every sequence name of the file and its raw rows (a
    terminal '*' dropped), from the one parse: `read_focus_alignment` walks the focus's row."""
    alphabet = _as_alphabet(alphabet)
    if insertions not in ("drop", "keep"):
        raise ValueError(f"insertions must be 'drop' or 'keep', got {insertions!r}")
    unknown = _unknown_mode(unknown, strict)
    text = _read_text(path)
    if not text.strip():
        raise ValueError(f"{os.fspath(path)}: the file is empty")
    kind = _sniff(text, path)
    if format is not None:
        wanted = _FORMATS.get(format.lower())
        if wanted is None:
            raise ValueError(f"format must be one of 'fasta', 'a2m', 'a3m', 'stockholm', got {format!r}")
        if wanted != kind:
            raise ValueError(f"{os.fspath(path)}: format={format!r} was asked for, but the file looks like {kind}")
    names, raw, where = _parse_stockholm(text, path) if kind == "stockholm" else _parse_fasta(text, path)
    if not names:
        raise ValueError(f"{os.fspath(path)}: no sequences found")
    raw = _check_characters(names, raw, where, alphabet, path)

    matches = _match_states(raw, alphabet, insertions)
    lengths = [len(s) for s in matches]
    L0 = lengths[0]
    for k, n in enumerate(lengths):
        if n != L0:
            note = " after dropping insertions (lower case and '.')" if insertions == "drop" else ""
            raise ValueError(
                f"{os.fspath(path)}: ragged alignment: sequence {names[k]!r} (number {k + 1}) has {n} match "
                f"columns but the first sequence {names[0]!r} has {L0}{note}"
            )
    if L0 == 0:
        hint = " (every character is an insertion: lower case or '.'; try insertions='keep')"
        raise ValueError(f"{os.fspath(path)}: the alignment has no match columns{hint}")

    seqs, valid = _encode_all(matches, names, alphabet, unknown, path)
    M_file, L_file = seqs.shape
    rows = np.arange(M_file)
    columns = np.arange(L_file)
    if not valid.all():  # unknown="drop"
        if not valid.any():
            raise ValueError(
                f"{os.fspath(path)}: unknown='drop' removes all {M_file} sequences (each has a letter outside the {alphabet.name} alphabet)"
            )
        seqs, rows = seqs[valid], rows[valid]

    if max_gap_fraction is not None or max_column_gap_fraction is not None:
        if alphabet.gap_index is None:
            raise ValueError(f"gap filters need an alphabet with a gap; the {alphabet.name} alphabet has none")
        gap = alphabet.gap_index
    if max_gap_fraction is not None:
        _check_fraction(max_gap_fraction, "max_gap_fraction")
        keep = np.mean(seqs == gap, axis=1) <= max_gap_fraction
        if not keep.any():
            raise ValueError(f"max_gap_fraction={max_gap_fraction} removes all {M_file} sequences")
        seqs, rows = seqs[keep], rows[keep]
    if max_column_gap_fraction is not None:
        _check_fraction(max_column_gap_fraction, "max_column_gap_fraction")
        keep = np.mean(seqs == gap, axis=0) <= max_column_gap_fraction
        if not keep.any():
            raise ValueError(f"max_column_gap_fraction={max_column_gap_fraction} removes all {L_file} columns")
        seqs, columns = seqs[:, keep], columns[keep]
    if remove_duplicates:
        first = _first_occurrences(seqs)
        seqs, rows = seqs[first], rows[first]

    aln = Alignment(
        seqs=np.ascontiguousarray(seqs, dtype=np.int32),
        alphabet=alphabet,
        names=tuple(names[r] for r in rows),
        columns=columns,
        rows=rows,
        n_columns=L_file,
        n_sequences=M_file,
    )
    return aln, names, raw


def _read_text(path: PathLike) -> str:
    """The file's text: gunzipped (by magic bytes), BOMs removed, UTF-16 decoded, NUL bytes refused."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ValueError(f"{os.fspath(path)}: looks gzipped but cannot be decompressed ({err})") from err
    if data[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        raise ValueError(f"{os.fspath(path)}: the file is UTF-32 text (byte-order mark); save it as UTF-8 or ASCII")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with a byte-order mark (Windows "Unicode")
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{os.fspath(path)}: starts with a UTF-16 byte-order mark but is not valid "
                f"UTF-16 ({err.reason} at byte {err.start})"
            ) from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(
            f"{os.fspath(path)}: a binary file (NUL byte at offset {nul}), not a text alignment "
            "(FASTA, A2M/A3M or Stockholm)"
        )
    if data[:3] == b"\xef\xbb\xbf":  # UTF-8 byte-order mark
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # every byte is a character; only headers can hold such bytes


def _sniff(text: str, path: PathLike) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.upper().startswith("# STOCKHOLM"):
            return "stockholm"
        if stripped.startswith(">"):
            return "fasta"
        if stripped.startswith(("#", ";")):
            continue
        raise ValueError(
            f"{os.fspath(path)}: cannot tell the alignment format: expected FASTA/A2M/A3M (a '>' header) or "
            f"Stockholm ('# STOCKHOLM 1.0'), found {stripped[:40]!r}"
        )
    raise ValueError(f"{os.fspath(path)}: no sequences found (only comment lines)")


# Where each sequence came from: for sequence k, its lines as (line number, column of the
# first residue character, the residues of the line with white space removed, their columns).
_Where = list[list[tuple[int, str, Sequence[int]]]]


def _residues(line: str, start: int, lineno: int) -> tuple[int, str, Sequence[int]]:
    residues = "".join(line[start:].split())
    if len(residues) == len(line) - start:  # no white space (most lines): columns are a range
        return lineno, residues, range(start + 1, len(line) + 1)
    cols = [c for c in range(start, len(line)) if not line[c].isspace()]
    return lineno, residues, [c + 1 for c in cols]


def _parse_fasta(text: str, path: PathLike) -> tuple[list[str], list[str], _Where]:
    names: list[str] = []
    chunks: _Where = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.startswith(">"):
            words = line[1:].split()
            names.append(words[0] if words else f"sequence_{len(names) + 1}")
            chunks.append([])
        elif not chunks or line.startswith(";"):
            continue  # '#' / ';' comment lines before the first header (checked by _sniff); ';' comments
        elif line.strip():
            chunks[-1].append(_residues(line, 0, lineno))
    return names, ["".join(r for _, r, _ in c) for c in chunks], chunks


def _parse_stockholm(text: str, path: PathLike) -> tuple[list[str], list[str], _Where]:
    parts: dict[str, list[tuple[int, str, Sequence[int]]]] = {}
    block_of: dict[str, int] = {}  # name -> block (paragraph between blank lines) it last appeared in
    block = 0
    ended = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            block += 1
            continue
        if ended:
            raise ValueError(
                f"{os.fspath(path)}: line {lineno}: content after '//': the file holds more than one Stockholm "
                "alignment; read_alignment reads one"
            )
        if stripped.startswith("//"):
            ended = True
            continue
        if stripped.startswith("#"):
            continue  # header, #=GF, #=GS, #=GR, #=GC annotations
        words = stripped.split()
        if len(words) < 2:
            raise ValueError(f"{os.fspath(path)}: line {lineno}: sequence {words[0]!r} has no residues")
        if block_of.get(words[0]) == block:
            raise ValueError(
                f"{os.fspath(path)}: line {lineno}: sequence name {words[0]!r} appears twice in one "
                "block; Stockholm names must be unique (a name's lines in later blocks continue it)"
            )
        block_of[words[0]] = block
        start = line.index(words[0]) + len(words[0])
        parts.setdefault(words[0], []).append(_residues(line, start, lineno))
    if not ended:
        raise ValueError(f"{os.fspath(path)}: Stockholm alignment lacks its '//' terminator (truncated file?)")
    return list(parts), ["".join(r for _, r, _ in p) for p in parts.values()], list(parts.values())


def _check_characters(names: list[str], raw: list[str], where: _Where, alphabet: Alphabet, path) -> list[str]:
    """Drop a terminal '*' of each sequence; refuse an inner '*' and digits (not symbols of the
    alphabet), naming the line and column of the first one."""
    stop_known = alphabet.knows("*")
    digits = [d for d in "0123456789" if not alphabet.knows(d)]
    out = []
    for k, seq in enumerate(raw):
        if not stop_known and seq.endswith("*"):
            seq = seq[:-1]
        bad_stop = not stop_known and "*" in seq
        bad_digit = bool(digits) and any(d in seq for d in digits)
        if bad_stop or bad_digit:
            for lineno, residues, cols in where[k]:
                for c, col in zip(residues, cols, strict=False):
                    if (c == "*" and bad_stop) or (c in digits and bad_digit):
                        if c == "*":
                            why = (
                                "'*' (a stop codon) inside the sequence; jaxpotts drops a '*' only as the last "
                                "character of a sequence"
                            )
                        else:
                            why = (
                                f"digit {c!r}: not a residue of the {alphabet.name} alphabet (numbered sequence "
                                "lines, as in GenBank files, are not an alignment)"
                            )
                        raise ValueError(
                            f"{os.fspath(path)}: line {lineno}, column {col}: {why} "
                            f"(sequence {names[k]!r}, number {k + 1})"
                        )
        out.append(seq)
    return out


def _match_states(raw: list[str], alphabet: Alphabet, insertions: str) -> list[str]:
    known = set(alphabet.index)
    if insertions == "drop":
        drop = {ord(c): None for c in "." + "abcdefghijklmnopqrstuvwxyz" if c not in known}
        return [s.translate(drop) for s in raw]
    table = {ord(c): c.upper() for c in "abcdefghijklmnopqrstuvwxyz" if c not in known}
    if "." not in known:
        if alphabet.gap is None:
            if any("." in s for s in raw):
                raise ValueError(f"insertions='keep' reads '.' as a gap, but the {alphabet.name} alphabet has none")
        else:
            table[ord(".")] = alphabet.gap
    return [s.translate(table) for s in raw]


def _unknown_mode(unknown: str, strict: bool) -> str:
    """The `unknown` mode of `read_alignment`, with ``strict=True`` as a shorthand for "error"."""
    if unknown not in ("gap", "drop", "error"):
        raise ValueError(f"unknown must be 'gap', 'drop' or 'error', got {unknown!r}")
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    if strict and unknown == "drop":
        raise ValueError("strict=True (unknown letters raise) contradicts unknown='drop'; pass only one")
    return "error" if strict else unknown


def _encode_all(
    matches: list[str], names: list[str], alphabet: Alphabet, unknown: str, path
) -> tuple[np.ndarray, np.ndarray]:
    """(colours (M, L), valid (M,) bool): unknown letters read as gaps (valid all True), or their
    sequences marked invalid for dropping, or an error, by `unknown` ("gap", "drop", "error")."""
    M, L = len(matches), len(matches[0])
    colours = _lookup(alphabet._lut, _code_points("".join(matches))).reshape(M, L)
    bad = colours < 0
    valid = np.ones(M, bool)
    if not bad.any():
        return colours, valid
    m, i = (int(x[0]) for x in np.nonzero(bad))
    letter = matches[m][i]
    where = f"sequence {names[m]!r} (number {m + 1}), match column {i + 1}"
    if unknown == "error" or (unknown == "gap" and alphabet.gap_index is None):
        why = "" if unknown == "error" else f"; the {alphabet.name} alphabet has no gap to read it as"
        raise ValueError(
            f"{os.fspath(path)}: unknown letter {letter!r} in {where}: not in the {alphabet.name} alphabet "
            f"{alphabet.symbols!r} or its aliases{why}"
        )
    letters, counts = np.unique(
        np.array([matches[a][b] for a, b in zip(*np.nonzero(bad), strict=False)]), return_counts=True
    )
    summary = ", ".join(f"{str(c)!r} x{int(n)}" for c, n in zip(letters, counts, strict=False))
    if unknown == "drop":
        valid = ~bad.any(axis=1)
        warnings.warn(
            f"{os.fspath(path)}: dropped {int(M - valid.sum())} of {M} sequences that hold unknown letter(s) "
            f"({int(bad.sum())} letter(s): {summary}; first in {where}); unknown='gap' reads them as gaps",
            stacklevel=4,
        )
        colours[bad] = 0  # placeholder colour in rows that are dropped
        return colours, valid
    warnings.warn(
        f"{os.fspath(path)}: {int(bad.sum())} unknown letter(s) read as gaps ({summary}; first in {where}); "
        "unknown='drop' drops their sequences, unknown='error' refuses them",
        stacklevel=4,
    )
    colours[bad] = alphabet.gap_index
    return colours, valid


def _check_fraction(x, name: str) -> None:
    if not (isinstance(x, (int, float, np.floating, np.integer)) and 0.0 <= float(x) <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {x!r}")


def _distinct_rows(seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse): the first occurrence of each distinct row (increasing) and, for every
    row, the position of its distinct row in `first`."""
    small = np.ascontiguousarray(seqs, dtype=np.uint8 if seqs.max(initial=0) < 256 else np.int32)
    rows = small.view(np.dtype((np.void, small.dtype.itemsize * small.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[inverse.ravel()]


def _first_occurrences(seqs: np.ndarray) -> np.ndarray:
    """Indices (increasing) of the first occurrence of each distinct row."""
    return _distinct_rows(seqs)[0]


def merge_duplicates(seqs, weights=None) -> tuple[np.ndarray, np.ndarray]:
    r"""Identical sequences merged into one, with the sum of their weights.

    Any weighted sum over sequences, $\sum_m w_m f(s^m)$ (a pseudo-likelihood, an MLM loss,
    frequencies), is unchanged, $\sum_u (\sum_{m: s^m = u} w_m) f(u)$, and costs less when
    an alignment holds copies (PF00014: 4915 sequences, 3617 distinct). Kept sequences are the
    first occurrences, in their original order.

    Args:
        seqs: integer colours (M, L), or an `Alignment`.
        weights: (M,) non-negative weights (default 1 each).

    Returns:
        (distinct sequences (U, L) int32, summed weights (U,) float64).
    """
    arr = np.asarray(seqs.seqs if isinstance(seqs, Alignment) else seqs)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"seqs must have shape (M, L) with M >= 1, got {tuple(arr.shape)}")
    if weights is None:
        w = np.ones(arr.shape[0])
    else:
        check_weights(weights, arr.shape[0])  # shape, finiteness and sign, with clear errors
        w = np.asarray(weights, np.float64)  # summed in float64 whatever JAX's default dtype
    first, inverse = _distinct_rows(arr)
    return np.ascontiguousarray(arr[first], dtype=np.int32), np.bincount(inverse, weights=w, minlength=first.size)


# ----------------------------------------------------------------------------- weights


def sequence_weights(
    seqs,
    threshold: float = 0.8,
    *,
    chunk_size: int | None = None,
    q: int | None = None,
) -> Float[Array, " M"]:
    r"""DCA sequence weights $w_m = 1 / \#\{n : \mathrm{id}(m,n) \ge \theta\}$.

    $\mathrm{id}(m,n)$ is the fraction of the L columns where sequences m and n have the same
    colour, gap-gap matches included (plmDCA's convention; see the module docstring), and
    $\theta$ = `threshold`. A sequence counts itself, so $0 < w_m \le 1$.

    The identities are computed block by block and never stored as an M x M matrix: for each
    pair of row blocks (I, J) with I <= J, one-hot blocks give the identity counts as a matrix
    product $X_I X_J^\top$ (exact integers, accumulated in float32), thresholded and summed
    into the counts of both blocks; a jitted `lax.scan` runs over the block pairs. Memory is
    O(M L + B L q + B^2) for block size B (about 0.4 GB in all for 10^5 x 300); time
    O(U^2 L q / 2) multiply-adds for the U distinct sequences (copies share their neighbours,
    so each is compared once and counted with its multiplicity), run as GEMMs (float32 on CPU,
    bfloat16 inputs with float32 accumulation on accelerators; 0/1 products keep the counts
    exact). Measured on two shared CPU cores: 4915 x 53 (3617 distinct) in 0.12 s, 11418 x 116
    in 5-9 s, 10^4 x 300 in 15 s, so 10^5 x 300 takes minutes (quadratic in U) on a CPU.

    Args:
        seqs: integer colours (M, L), or an `Alignment`.
        threshold: identity threshold $\theta$ in (0, 1]; 1 counts only identical sequences.
        chunk_size: rows per block B (default 512 on CPU, 2048 on accelerators); any value
            works, the last block is padded.
        q: number of colours (default: max colour + 1).

    Returns:
        Weights (M,), float (float32 unless x64 is enabled). `effective_number` sums them.
    """
    if isinstance(seqs, Alignment):
        if q is None:
            q = seqs.alphabet.q
        seqs = seqs.seqs
    X = np.asarray(seqs)
    if X.ndim != 2:
        raise ValueError(f"seqs must have shape (M, L), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.integer):
        raise TypeError(f"seqs must hold integer colours, got dtype {X.dtype}")
    M, L = X.shape
    if M == 0 or L == 0:
        raise ValueError(f"seqs must have at least one sequence and one column, got shape {X.shape}")
    lo, hi = int(X.min()), int(X.max())
    if q is None:
        q = hi + 1
    if lo < 0 or hi >= q:
        raise ValueError(f"seqs contain colours outside 0..{q - 1} (found min {lo}, max {hi})")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise TypeError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if chunk_size is None:
        chunk_size = 512 if jax.default_backend() == "cpu" else 2048
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    # Smallest identity count k with k / L >= threshold, evaluated exactly as the definition reads.
    cutoff = int(np.flatnonzero(np.arange(L + 1) / L >= float(threshold))[0])

    # Copies of a sequence have the same neighbours: compare the U distinct sequences only, each
    # counting as many neighbours as it has copies (PF00014: 3617 of 4915, half the work).
    first, inverse = _distinct_rows(X)
    copies = np.bincount(inverse, minlength=first.size).astype(np.int32)
    U = first.size
    B = int(min(chunk_size, U))
    n_blocks = -(-U // B)
    padded = np.full((n_blocks * B, L), q, dtype=np.int32)  # colour q: all-zero one-hot row
    padded[:U] = X[first]
    multiplicity = np.zeros(n_blocks * B, np.int32)  # padding rows count for nothing
    multiplicity[:U] = copies
    block_i, block_j = np.triu_indices(n_blocks)
    dtype = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    # numpy in and out: only the scan over block pairs is a compiled program
    counts = _neighbour_counts(
        padded.reshape(n_blocks, B, L),
        multiplicity.reshape(n_blocks, B),
        block_i.astype(np.int32),
        block_j.astype(np.int32),
        np.float32(cutoff),
        q=q,
        dtype=dtype,
    )
    counts = np.asarray(counts).reshape(-1)[:U][inverse]
    return jnp.asarray(1.0 / counts, dtype=jnp.result_type(float))


@partial(jax.jit, static_argnames=("q", "dtype"))
def _neighbour_counts(blocks, multiplicity, block_i, block_j, cutoff, *, q: int, dtype):
    """$\sum_n c_n [\text{identity count}(m, n) \ge \text{cutoff}]$ for every row m, with $c_n$
    the `multiplicity` of row n, by a scan over block pairs block_i <= block_j."""
    n_blocks, B, L = blocks.shape

    def one_hot(block):
        return jax.nn.one_hot(block, q, dtype=dtype).reshape(B, L * q)

    def step(counts, ij):
        i, j = ij
        ident = jax.lax.dot_general(
            one_hot(blocks[i]),
            one_hot(blocks[j]),
            (((1,), (1,)), ((), ())),
            preferred_element_type=jnp.float32,
            precision=jax.lax.Precision.HIGHEST,  # exact integer counts on every backend (docs/accelerators.md)
        )
        close = ident >= cutoff
        counts = counts.at[i].add(jnp.sum(jnp.where(close, multiplicity[j][None, :], 0), axis=1, dtype=jnp.int32))
        from_j = jnp.sum(jnp.where(close, multiplicity[i][:, None], 0), axis=0, dtype=jnp.int32)
        counts = counts.at[j].add(jnp.where(i != j, from_j, 0))
        return counts, None

    counts, _ = jax.lax.scan(step, jnp.zeros((n_blocks, B), jnp.int32), (block_i, block_j))
    return counts


def effective_number(weights: Float[Array, " M"]) -> Scalar:
    r"""Effective number of sequences $M_\mathrm{eff} = \sum_m w_m$."""
    w = jnp.asarray(weights)
    if w.ndim != 1:
        raise ValueError(f"weights must have shape (M,), got shape {tuple(w.shape)}")
    return jnp.sum(w)


# ----------------------------------------------------------------------------- focus sequence


@dataclasses.dataclass(frozen=True, eq=False)
class Focus:
    r"""The focus (reference, wild-type) sequence of an alignment and its residue numbering.

    Residue numbers come from the focus name ``NAME/start-end`` (UniProt/Pfam/EVcouplings
    convention): the k-th residue of the focus row (k = 0, 1, ...; every letter counts, upper or
    lower case, match state or insertion; gaps '-' and '.' do not) has number ``start + k``.
    Without a ``/start-end`` suffix the first residue is number 1.

    Attributes:
        name: the focus sequence's name as in the file (e.g. ``"DYR_ECOLI/1-159"``).
        row: its index in ``Alignment.seqs``.
        start: residue number of its first residue.
        end: residue number of its last residue (``start + len(residues_all) - 1``).
        letters: the focus letters over the L model sites (upper case, as in the file; the
            alignment's gap symbol where a site is a focus gap, only with ``keep_focus_gaps``).
        residues: residue number of each of the L sites, -1 where the focus has a gap.
        full_sequence: all residues of the focus, upper-cased, numbered ``start..end``
            (insertions included; they have no site).
    """

    name: str
    row: int
    start: int
    end: int
    letters: str
    residues: Int[np.ndarray, " L"]
    full_sequence: str

    @property
    def L(self) -> int:
        return len(self.letters)

    def site(self, residue: int) -> int:
        """Model site (0-based) of a residue number; a clear error if it has none."""
        return int(self.sites(np.array([residue]))[0])

    def sites(self, residues) -> Int[np.ndarray, " n"]:
        r"""Model sites (0-based) of residue numbers, vectorised.

        Raises ValueError naming the first residue number that is outside ``start..end`` or
        that is not a model site (a focus insertion, lower case in A2M, or a column removed by
        a column filter).
        """
        r = np.asarray(residues)
        if r.size and not np.issubdtype(r.dtype, np.integer):
            raise TypeError(f"residue numbers must be integers, got dtype {r.dtype}")
        r = r.astype(np.int64).reshape(-1)
        lookup = np.full(self.end - self.start + 1, -1, dtype=np.int64)
        has = self.residues >= 0
        lookup[self.residues[has] - self.start] = np.flatnonzero(has)
        outside = (r < self.start) | (r > self.end)
        if outside.any():
            bad = int(r[np.flatnonzero(outside)[0]])
            raise ValueError(
                f"residue {bad} is outside the focus {self.name!r}, whose residues are numbered "
                f"{self.start}..{self.end}"
            )
        out = lookup[r - self.start]
        if (out < 0).any():
            bad = int(r[np.flatnonzero(out < 0)[0]])
            raise ValueError(
                f"residue {bad} of the focus {self.name!r} is not a model site (an insertion, lower "
                "case in A2M, or a column removed by a filter)"
            )
        return out

    def residue(self, site: int) -> int:
        """Residue number of a model site (-1 for a focus gap kept with ``keep_focus_gaps``)."""
        if isinstance(site, bool) or not isinstance(site, (int, np.integer)) or not 0 <= site < self.L:
            raise ValueError(f"site must be an integer in 0..{self.L - 1}, got {site!r}")
        return int(self.residues[site])

    def wild_type_letter(self, residue: int) -> str:
        """The focus letter (upper case) at a residue number, whether or not it is a model site."""
        if (
            isinstance(residue, bool)
            or not isinstance(residue, (int, np.integer))
            or not self.start <= residue <= self.end
        ):
            raise ValueError(f"residue {residue!r} is outside the focus {self.name!r} ({self.start}..{self.end})")
        return self.full_sequence[int(residue) - self.start]


@dataclasses.dataclass(frozen=True, eq=False)
class FocusAlignment(Alignment):
    r"""An `Alignment` over the match columns of a focus sequence, with its numbering.

    Everything `Alignment` has (``seqs, alphabet = aln`` still unpacks), plus `focus`.
    ``columns[i]`` is still the file's match column of site i; ``focus.residues[i]`` is the
    focus residue number of site i; ``seqs[focus.row]`` is the wild type.
    """

    focus: Focus = None  # type: ignore[assignment]

    @property
    def wild_type(self) -> Int[np.ndarray, " L"]:
        """The focus sequence's colours over the L sites (the wild type), int32."""
        return self.seqs[self.focus.row]

    def __repr__(self) -> str:
        return (
            f"FocusAlignment(M={self.M}, L={self.L}, focus={self.focus.name!r} residues "
            f"{self.focus.start}-{self.focus.end}, from {self.n_sequences} sequences x {self.n_columns} match columns)"
        )


def _parse_range(name: str) -> tuple[int, int] | None:
    """(start, end) of ``NAME/start-end``, or None."""
    if "/" not in name:
        return None
    tail = name.rsplit("/", 1)[1]
    parts = tail.split("-")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _focus_columns(raw: str, alphabet: Alphabet, insertions: str) -> tuple[list[int], list[str], str]:
    """Walk the focus row: for each match column its residue index (0-based among all focus
    residues; -1 for a gap) and its letter; plus the string of all residues (upper case).

    Mirrors `_match_states`: with ``insertions="drop"`` lower-case letters (that are not
    themselves symbols/aliases) and '.' are insertions (no column); otherwise every character
    is a column. Gaps are the alphabet's gap symbol, '-' and '.'.
    """
    known = set(alphabet.index)
    gap_chars = {"-", "."} | ({alphabet.gap} if alphabet.gap is not None else set())
    residue_of_column: list[int] = []
    letters: list[str] = []
    residues: list[str] = []
    for c in raw:
        is_gap = c in gap_chars and not (c in known and alphabet.index[c] != alphabet.gap_index)
        insert = insertions == "drop" and (c == "." or (c.islower() and c not in known))
        if is_gap:
            if not insert:
                residue_of_column.append(-1)
                letters.append(alphabet.gap if alphabet.gap is not None else c)
            continue
        residues.append(c.upper())
        if not insert:
            residue_of_column.append(len(residues) - 1)
            letters.append(c.upper())
    return residue_of_column, letters, "".join(residues)


def read_focus_alignment(
    path: PathLike,
    focus: None | int | str = None,
    *,
    keep_focus_gaps: bool = False,
    start: int | None = None,
    **options,
) -> FocusAlignment:
    r"""Read an alignment and keep the match columns of its focus sequence (EVcouplings' convention).

    The focus is the reference (wild-type) sequence whose mutations are scored; in plmc/EVcouplings
    A2M files it is the first sequence, named ``NAME/start-end``. Columns where the focus has a
    gap are dropped (they are not positions of the protein; plmc's ``-f`` and EVcouplings do the
    same), so site i of the result is the focus residue ``focus.residues[i]``:

    $$\text{sites} = \{\,c \in \text{match columns} : \text{focus}_c \ne \text{gap}\,\}, \qquad
      \text{residue}(c) = \text{start} + \#\{\text{focus residues before column } c\}.$$

    Insertions (lower case, '.') are dropped as in `read_alignment`, but focus residues in
    insertions still count in the numbering. Letters read as a gap by the alphabet (X, B, Z in
    `PROTEIN`) are residues of the focus, not gaps.

    Args:
        path: the alignment file (any format `read_alignment` reads).
        focus: None (default): the first sequence of the file; an int: the index (0-based) of a
            sequence in the file; a str: a sequence name, either complete (``"DYR_ECOLI/1-159"``)
            or the part before '/' (``"DYR_ECOLI"``, as plmc's ``-f``).
        keep_focus_gaps: keep the columns where the focus has a gap (their residue number is
            -1 and they cannot be mutated). Off by default: such columns are insertions relative
            to the focus, and keeping them shifts nothing but adds sites no mutation refers to.
        start: residue number of the focus's first residue, overriding ``NAME/start-end``
            (default: from the name, else 1).
        **options: passed to `read_alignment` (``alphabet``, ``insertions``, ``unknown``,
            filters ...). With ``unknown="drop"`` sequences holding an unknown letter in a match
            column are dropped (plmc's validity filter), but never the focus: a focus with an
            unknown letter is an error.

    Returns:
        A `FocusAlignment` (an `Alignment` with a `Focus`).

    Raises:
        ValueError: no such focus sequence, the focus removed by a filter (or holding an
            unknown letter with ``unknown="drop"``), a range
            ``start-end`` that disagrees with the number of focus residues, or no site left.
    """
    aln, names, raw = _read_with_rows(path, **options)  # one parse: the focus row comes with it
    alphabet = aln.alphabet
    insertions = options.get("insertions", "drop")

    # Which sequence of the file is the focus.
    if focus is None:
        index = 0
    elif isinstance(focus, (int, np.integer)) and not isinstance(focus, bool):
        if not 0 <= focus < len(names):
            raise ValueError(f"focus index {focus} is out of range: the file has {len(names)} sequences")
        index = int(focus)
    elif isinstance(focus, str):
        hits = [k for k, n in enumerate(names) if n == focus]
        if not hits:
            hits = [k for k, n in enumerate(names) if n.split("/", 1)[0] == focus]
        if not hits:
            raise ValueError(f"{os.fspath(path)}: no sequence named {focus!r} (first names: {', '.join(names[:3])})")
        index = hits[0]
    else:
        raise TypeError(f"focus must be None, a sequence index or a name, got {type(focus).__name__}")
    name = names[index]
    found = np.flatnonzero(aln.rows == index)
    if found.size == 0:
        focus_match = _match_states([raw[index]], alphabet, insertions)[0]
        odd = sorted({c for c in focus_match if not alphabet.knows(c)})
        if odd:  # only unknown="drop" removes a sequence for its letters
            raise ValueError(
                f"the focus sequence {name!r} holds unknown letter(s) {odd} and unknown='drop' would drop it; "
                "the focus is never dropped: read with unknown='gap', or correct the focus sequence"
            )
        raise ValueError(
            f"the focus sequence {name!r} was removed by the sequence filters (max_gap_fraction or "
            "remove_duplicates); relax them or choose another focus"
        )
    row = int(found[0])

    residue_of_column, letters, full = _focus_columns(raw[index], alphabet, insertions)
    if len(residue_of_column) != aln.n_columns:  # cannot happen unless the two walks disagree
        raise AssertionError(f"focus walk found {len(residue_of_column)} match columns, the alignment {aln.n_columns}")
    if not full:
        raise ValueError(f"the focus sequence {name!r} has no residues")
    rng = _parse_range(name)
    if start is None:
        if rng is not None:
            first, last = rng
            if last - first + 1 != len(full):
                raise ValueError(
                    f"the focus name {name!r} says residues {first}-{last} ({last - first + 1} residues) but the "
                    f"sequence has {len(full)}; pass start= to number it yourself"
                )
            start = first
        else:
            start = 1
    elif isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise TypeError(f"start must be an integer, got {start!r}")
    start = int(start)

    col_res = np.asarray(residue_of_column, dtype=np.int64)[aln.columns]
    col_letters = [letters[c] for c in aln.columns]
    keep = np.ones(aln.L, bool) if keep_focus_gaps else col_res >= 0
    if not keep.any():
        raise ValueError(f"no column is left: the focus {name!r} has a gap in every kept match column")
    residues = np.where(col_res[keep] >= 0, col_res[keep] + start, -1).astype(np.int64)
    focus_info = Focus(
        name=name,
        row=row,
        start=start,
        end=start + len(full) - 1,
        letters="".join(c for c, k in zip(col_letters, keep, strict=False) if k),
        residues=residues,
        full_sequence=full,
    )
    return FocusAlignment(
        seqs=np.ascontiguousarray(aln.seqs[:, keep]),
        alphabet=alphabet,
        names=aln.names,
        columns=aln.columns[keep],
        rows=aln.rows,
        n_columns=aln.n_columns,
        n_sequences=aln.n_sequences,
        focus=focus_info,
    )

"""Shared by the peer runners: the match columns of an alignment as plain FASTA, and the result
file that benchmarks/contacts.py reads.

Imported from the runner scripts' own folder (they run as scripts, so it is on sys.path),
with whatever interpreter runs them; standard library only.
"""

from __future__ import annotations

import json
import os
import sys


def match_columns_fasta(src: str, dst: str) -> tuple[int, int]:
    """Write `src` as upper-case single-line FASTA of its match columns (drop lower case and '.')."""
    names, seqs, cur = [], [], []
    with open(src) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if names:
                    seqs.append("".join(cur))
                names.append(line)
                cur = []
            else:
                cur.append("".join(c for c in line if not (c.islower() or c == ".")))
    if names:
        seqs.append("".join(cur))
    if not seqs:
        raise SystemExit(f"{src}: no sequences")
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise SystemExit(f"{src}: ragged alignment after dropping inserts (lengths {sorted(lengths)[:5]})")
    with open(dst, "w") as out:
        for n, s in zip(names, seqs, strict=False):
            out.write(f"{n}\n{s}\n")
    return len(seqs), lengths.pop()


def write_result(
    path: str, *, tool: str, method: str, alignment: str, L: int, sequences: int, scores, seconds: float, **extra
) -> None:
    """The JSON benchmarks/contacts.py reads: scores (L x L, 0-based match columns), timing and settings."""
    result = {
        "tool": tool,
        "method": method,
        **extra,
        "alignment": os.path.abspath(alignment),
        "L": L,
        "sequences": sequences,
        "scores": scores.tolist(),
        "seconds": seconds,
    }
    with open(path, "w") as fh:
        json.dump(result, fh)
    print(f"{tool} {method}: L={L} N={sequences} {seconds:.1f} s -> {path}", file=sys.stderr)

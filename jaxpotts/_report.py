"""Small helpers for the human- and machine-readable outputs of the command line and the demo:
markdown tables (readable as plain text too) and JSON that stays valid (NaN/inf become null,
numpy scalars and arrays become numbers and lists)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """`x` with numpy types converted and non-finite floats replaced by None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: Path, data: Any) -> Path:
    """Write `data` as indented strict JSON (see `jsonable`), creating the folder; atomically
    (`jaxpotts._files.write_json`, the one implementation)."""
    from ._files import write_json as _write_json

    return _write_json(path, data)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], floats: str = "{:.4g}") -> str:
    """Rows (dicts) as a markdown table with aligned columns; floats formatted with `floats`."""

    def fmt(v):
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (float, np.floating)):
            return floats.format(float(v))
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=False)) + " |"  # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])

"""Progress display for long runs (sampling, training, curve solving).

Drivers call jitted chunks from a short Python loop and tick a bar between chunks, so the
display never enters traced code and costs nothing inside jit. `enabled=False` (or
`quiet` in the CLI) silences it; so does a non-interactive stderr unless forced.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool | None = True, unit: str = "it") -> Iterator:
    """A tqdm bar when enabled (None: only if stderr is a terminal), else a no-op bar."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _NullBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()

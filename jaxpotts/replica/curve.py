r"""Learning curves: the saddle point along an alpha grid for several lambdas, as a tidy table.

`learning_curve` solves every (alpha, lambda) pair with continuation: for each lambda the
alphas are visited in the given order (`lax.scan`), each solve warm-started from the previous
alpha's order parameters, and the lambdas are solved in one compiled program (`vmap`, or
`lax.map` on CPU). The result is
a dict of numpy arrays with one row per (lambda, alpha) pair; `write_csv` / `write_json`
store it.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._files import write_json as _write_strict_json
from .._files import write_text
from .._progress import progress_bar
from ._fixed_point import RESULT_ITEMS, RESULTS, result_code
from .integrals import Integrator
from .scenario import Scenario
from .solver import Solution, check_options, check_point, initial_point, make_problem, solve_problem

__all__ = ["learning_curve", "write_table_csv", "write_table_json", "read_csv", "TABLE_COLUMNS"]

TABLE_COLUMNS = (
    "lam",
    "alpha",
    "m",
    "Q",
    "V",
    "m_hat",
    "Q_hat",
    "V_hat",
    "test_loss",
    "entropy",
    "excess_loss",
    "coupling_error",
    "train_loss",
    "residual",
    "n_steps",
    "result",
    "converged",
)


@eqx.filter_jit
def _segment(kind, p_template, alphas, lams, x0, tol, max_steps, damping, anderson, batching):
    """Continuation over `alphas` (scan) for every lambda (vmap or lax.map), from x0[lam]."""

    def one_lambda(lam, x_start):
        def step(x, alpha):
            p = eqx.tree_at(lambda t: (t.alpha, t.lam), p_template, (alpha, lam))
            sol = solve_problem(kind, p, x, tol=tol, max_steps=max_steps, damping=damping, memory=anderson)
            ok = sol.result == RESULTS.converged
            # Continue from the new point only if it converged; otherwise restart the next
            # alpha from the previous good point.
            x_next = jnp.where(ok, jnp.stack([sol.m, sol.Q, sol.V]), x)
            return x_next, sol

        return jax.lax.scan(step, x_start, alphas)

    if batching == "vmap":
        return jax.vmap(one_lambda)(lams, x0)
    return jax.lax.map(lambda args: one_lambda(*args), (lams, x0))


def learning_curve(
    scenario: Scenario,
    alphas: Sequence[float],
    lams: Sequence[float],
    *,
    tol: float | None = None,
    max_steps: int = 10_000,
    damping: float = 0.0,
    anderson: int = 3,
    integrator: Integrator | None = None,
    chunk: int | None = None,
    progress: bool | None = None,
    batching: str = "auto",
) -> dict[str, np.ndarray]:
    r"""Saddle points on the grid `alphas` x `lams`, with continuation along alpha.

    Args:
        scenario: the `Scenario`.
        alphas: 1-d increasing (recommended) grid of sample ratios $M/N \ge 0$.
        lams: 1-d grid of ridge strengths $\lambda \ge 0$, solved in parallel (vmap).
        tol, max_steps, damping, anderson, integrator: as in `solve`.
        chunk: number of alphas per compiled segment (default: all at once when `progress`
            is off, else about a tenth of the grid); the display ticks once per segment.
        progress: show a progress bar (None: only if stderr is a terminal).
        batching: how the lambdas are combined: ``"vmap"`` (one batched solve; best on
            accelerators), ``"map"`` (`lax.map`, one after the other inside the same compiled
            program; best on CPU, where a batched while-loop runs every lambda for as many
            iterations as the slowest one needs) or ``"auto"`` (map on CPU, else vmap).

    Returns:
        A dict of 1-d numpy arrays, one entry per `TABLE_COLUMNS` name and one row per
        (lam, alpha) pair (lam-major): ``lam, alpha, m, Q, V, m_hat, Q_hat, V_hat, test_loss,
        entropy, excess_loss, coupling_error, train_loss, residual, n_steps, result`` (the
        integer code; ``RESULTS[...]`` messages are listed by `result_messages`) and
        ``converged``.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    alphas_np = np.asarray(alphas, dtype=np.float64)
    lams_np = np.asarray(lams, dtype=np.float64)
    if alphas_np.ndim != 1 or alphas_np.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-d sequence, got shape {alphas_np.shape}")
    if lams_np.ndim != 1 or lams_np.size == 0:
        raise ValueError(f"lams must be a non-empty 1-d sequence, got shape {lams_np.shape}")
    check_point(alphas_np[None, :], lams_np[:, None])
    if batching not in ("auto", "vmap", "map"):
        raise ValueError(f"batching must be 'auto', 'vmap' or 'map', got {batching!r}")
    if batching == "auto":
        batching = "map" if jax.default_backend() == "cpu" else "vmap"
    dtype = jnp.result_type(float)
    tol = check_options(tol, max_steps, damping, dtype)
    p, kind = make_problem(scenario, integrator, 0.0, 0.0, dtype)

    n_alpha = alphas_np.size
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    if chunk is None:
        chunk = n_alpha if not progress else max(1, -(-n_alpha // 10))
    chunk = int(min(max(chunk, 1), n_alpha))

    lams_arr = jnp.asarray(lams_np, dtype)
    alpha0 = jnp.asarray(alphas_np[0], dtype)
    x = jax.vmap(lambda lam: initial_point(eqx.tree_at(lambda t: (t.alpha, t.lam), p, (alpha0, lam))))(lams_arr)
    pieces = []
    with progress_bar(n_alpha, f"replica curve ({scenario.kind}, q={scenario.q})", progress, unit="alpha") as bar:
        for start in range(0, n_alpha, chunk):
            seg = alphas_np[start : start + chunk]
            n_real = seg.size
            if n_real < chunk:  # pad with the last alpha: same compiled shape, converges at once
                seg = np.concatenate([seg, np.full(chunk - n_real, seg[-1])])
            x, sols = _segment(
                kind,
                p,
                jnp.asarray(seg, dtype),
                lams_arr,
                x,
                jnp.asarray(tol, dtype),
                jnp.asarray(max_steps),
                jnp.asarray(damping, dtype),
                int(anderson),
                batching,
            )
            pieces.append(jax.tree.map(lambda a, n=n_real: np.asarray(a)[:, :n], _as_numpy(sols)))
            bar.update(n_real)
    cols = {k: np.concatenate([piece[k] for piece in pieces], axis=1) for k in pieces[0]}
    return {k: cols[k].reshape(-1) for k in TABLE_COLUMNS}  # in the documented column order


def _as_numpy(sol: Solution) -> dict[str, np.ndarray]:
    out = {}
    for name in TABLE_COLUMNS:
        if name == "result":
            out[name] = np.asarray(result_code(sol.result))
        elif name == "converged":
            out[name] = np.asarray(sol.result == RESULTS.converged)
        else:
            out[name] = np.asarray(getattr(sol, name))
    lam = np.asarray(sol.lam)
    out["lam"] = np.broadcast_to(lam, out["alpha"].shape).copy() if lam.shape != out["alpha"].shape else lam
    return out


def result_messages() -> dict[int, str]:
    """Integer result code -> readable message."""
    return {code: RESULTS[item] for code, item in enumerate(RESULT_ITEMS)}


def write_table_csv(path: str | os.PathLike, table: dict[str, np.ndarray]) -> None:
    """Write a tidy table (dict of equal-length 1-d arrays) as CSV with a header row."""
    names = list(table)
    n = _check_table(table)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(names)
    for i in range(n):
        writer.writerow([_scalar(table[k][i]) for k in names])
    write_text(path, buf.getvalue())  # atomic: never a half-written table


def read_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a table written by `write_csv` (numeric columns as float/int/bool arrays, others as strings)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    names, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(names):
        col = [r[j] for r in body]
        if all(v in ("True", "False") for v in col):
            out[name] = np.array([v == "True" for v in col])
        else:
            try:
                out[name] = np.array([int(v) for v in col])
            except ValueError:
                try:
                    out[name] = np.array([float(v) for v in col])
                except ValueError:  # a label column (e.g. the scenario kind)
                    out[name] = np.array(col)
    return out


def write_table_json(path: str | os.PathLike, table: dict[str, np.ndarray], **metadata) -> None:
    """Write a tidy table as JSON: ``{"columns": {name: [values]}, **metadata}`` (strict JSON,
    NaN and inf as null, written atomically: the package's one JSON writer)."""
    _check_table(table)
    payload = {"columns": {k: [_scalar(v) for v in np.asarray(col)] for k, col in table.items()}}
    _write_strict_json(path, {**payload, **metadata})


def _deprecated(new):
    def old(table, path, **metadata):
        warnings.warn(
            f"replica.{new.__name__.replace('_table', '')}(table, path) is deprecated; use "
            f"replica.{new.__name__}(path, table)",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(path, table, **metadata)

    return old


# The previous names and argument order (table, path), for one release (CHANGELOG.md).
write_csv = _deprecated(write_table_csv)
write_json = _deprecated(write_table_json)


def _check_table(table) -> int:
    lengths = {k: len(np.asarray(v)) for k, v in table.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"table columns must have equal lengths, got {lengths}")
    return next(iter(lengths.values()))


def _scalar(v):
    v = np.asarray(v).item()
    return v

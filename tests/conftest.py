"""Shared test fixtures."""

import jax
import pytest


def enable_x64():
    """Context manager turning on float64 (jax.enable_x64 on jax >= 0.7, else jax.experimental)."""
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # pragma: no cover - older jax
        from jax.experimental import enable_x64 as ctx
    return ctx()


@pytest.fixture
def x64():
    """Run the test with float64 enabled."""
    with enable_x64():
        yield

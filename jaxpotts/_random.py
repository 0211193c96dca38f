"""Host-side randomness derived from JAX keys: shuffles, splits and subsets drawn with numpy
compile nothing, yet stay reproducible from the caller's explicit key."""

from __future__ import annotations

import jax
import numpy as np
from jaxtyping import PRNGKeyArray


def host_rng(key: PRNGKeyArray, *index: int) -> np.random.Generator:
    """A numpy generator seeded by the bits of a JAX key and optional integers (e.g. an epoch)."""
    words = np.asarray(jax.random.key_data(key), np.uint32).ravel().tolist()
    return np.random.default_rng(words + list(index))

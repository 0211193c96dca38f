"""jaxpotts: generalized Potts models and the factored self-attention layer that learns them.

Importing jaxpotts sets JAX up as the command line does (`jaxpotts.runtime.configure`: one CPU
device per core, the persistent compilation cache in ``~/.cache/jaxpotts/xla`` or
``JAXPOTTS_CACHE_DIR``), unless the user already chose (JAX's own variables and ``jax.config``
win) or set ``JAXPOTTS_CONFIGURE_JAX=0``. The device count can only be set before JAX runs
anything: import jaxpotts before running JAX code.
"""

import os as _os

from . import runtime
from .runtime import configure

if _os.environ.get(runtime.OPT_OUT_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off"):
    configure()

from . import (  # noqa: E402
    contacts,
    defaults,
    diagnostics,
    engine,
    exact,
    losses,
    memory,
    msa,
    potts,
    replica,
    sampling,
    serialization,
)
from .attention import FactoredAttention, Transformer  # noqa: E402
from .engine import FitConfig  # noqa: E402
from .losses import mlm_loss, pseudo_likelihood  # noqa: E402
from .potts import (  # noqa: E402
    FactoredPotts,
    PottsModel,
    check_joint,
    conditional_logits,
    energy,
    is_joint,
    local_fields,
    to_dense,
    zero_sum_gauge,
)
from .sampling import SampleResult, sample  # noqa: E402
from .training import fit, fit_plm  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "FactoredAttention",
    "FitConfig",
    "FactoredPotts",
    "PottsModel",
    "SampleResult",
    "check_joint",
    "conditional_logits",
    "configure",
    "contacts",
    "defaults",
    "diagnostics",
    "energy",
    "engine",
    "exact",
    "fit",
    "fit_plm",
    "is_joint",
    "local_fields",
    "losses",
    "memory",
    "mlm_loss",
    "msa",
    "potts",
    "pseudo_likelihood",
    "replica",
    "runtime",
    "sample",
    "sampling",
    "serialization",
    "to_dense",
    "Transformer",
    "zero_sum_gauge",
]

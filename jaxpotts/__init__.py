"""jaxpotts: generalized Potts models and the factored self-attention layer that learns them."""

from . import (
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
from .attention import FactoredAttention, Transformer
from .engine import FitConfig
from .losses import mlm_loss, pseudo_likelihood
from .potts import (
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
from .sampling import SampleResult, sample
from .training import fit, fit_plm

__version__ = "0.1.0"

__all__ = [
    "FactoredAttention",
    "FitConfig",
    "FactoredPotts",
    "PottsModel",
    "SampleResult",
    "check_joint",
    "conditional_logits",
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
    "sample",
    "sampling",
    "serialization",
    "to_dense",
    "Transformer",
    "zero_sum_gauge",
]

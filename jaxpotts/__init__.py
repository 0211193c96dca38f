"""jaxpotts: generalized Potts models and the factored self-attention layer that learns them."""

from . import potts
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

__version__ = "0.1.0"

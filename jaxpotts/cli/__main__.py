"""`python -m jaxpotts.cli`."""

import sys

from . import console

sys.exit(console())

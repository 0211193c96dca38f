"""`python -m jaxpotts.cli`."""

import sys

from . import main

sys.exit(main())

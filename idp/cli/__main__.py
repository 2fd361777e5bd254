"""``python -m idp.cli``: the same as the ``idp`` console script."""

import sys

from .root import main

sys.exit(main())

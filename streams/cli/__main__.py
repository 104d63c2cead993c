"""``python -m streams.cli``: the ``driftloop`` command."""

import sys

from streams.cli.main import main

sys.exit(main())

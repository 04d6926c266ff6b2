"""``python -m proxy`` is the ``cacheproxy`` command."""

import sys

from proxy.cli import main

sys.exit(main())

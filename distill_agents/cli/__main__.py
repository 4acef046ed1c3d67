"""``python -m distill_agents.cli``: the ``distill-grid`` command."""

import sys

from distill_agents.cli import main

sys.exit(main())

"""``python -m distill_agents.bench [--quick] [--students]``: print the benchmark tables."""

from distill_agents.bench.command import main

raise SystemExit(main())

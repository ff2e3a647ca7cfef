"""mloop: a closed-loop ML lifecycle platform.

Layers (imports only point down; ``lint-imports`` enforces it): ``mloop.cli`` (entry points) <-
``mloop.platform`` (local services, deploy, status) <- ``flows`` (orchestration) <- ``models`` /
``serving`` / ``monitoring`` (capabilities) <- ``mloop.core`` (settings, contract, datasets,
lineage, events). Nothing here does work at import time.
"""

__version__ = "0.1.0"

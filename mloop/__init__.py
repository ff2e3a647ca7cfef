"""mloop core: settings, data contracts, lineage types, event names and the CLI.

Nothing here does work at import time; heavy libraries are imported where they are used.
"""

__version__ = "0.1.0"

"""Keys of Prefect artifacts: one rule for every flow.

Prefect accepts only lowercase letters, digits and dashes in an artifact key; a key names the
artifact's history (each flow run adds a version under the same key), so the same model or
dataset must always give the same key.
"""

from __future__ import annotations

import string

MAX_KEY_LENGTH = 100
_ALLOWED = frozenset(string.ascii_lowercase + string.digits)


def artifact_key(kind: str, name: str) -> str:
    """``<kind>-<name>`` with ``name`` lowercased, every other character a dash, edge dashes dropped.

    E.g. ``artifact_key("drift", "Loans_v2")`` is ``drift-loans-v2``; at most 100 characters.
    """
    clean = "".join(c if c in _ALLOWED else "-" for c in name.lower()).strip("-")
    return f"{kind}-{clean}"[:MAX_KEY_LENGTH]

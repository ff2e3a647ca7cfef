"""The one rule that turns a user's column name into an identifier, for every place that needs one.

A CSV or parquet column may be called ``petal length (cm)``, ``a b``, ``1st``, ``class``,
``naïve`` or ``x/y``. Two places cannot use such a name as is: ONNX graph inputs (skl2onnx rewrites
any name that is not a C identifier, so the feed would miss it) and pydantic field names (keywords,
leading digits, leading underscores and BaseModel attributes are refused or shadowed). Both use
:func:`column_keys`; everything the user sees (request JSON, OpenAPI document, prediction log,
feedback, lineage) keeps the original names.

The rule, pure and deterministic for a given column order:

- a name that already is a safe identifier (ASCII letter first, then ASCII letters, digits and
  ``_``; not a Python keyword; not a pydantic ``BaseModel`` attribute or ``model_`` name) is its
  own key, so models packaged before this rule keep their ONNX input names;
- any other name becomes an ASCII slug (accents dropped, runs of other characters ``_``, and
  ``f_`` in front when the slug is still not safe: empty, leading digit, keyword, reserved), made
  unique with ``_2``, ``_3``... against every other key (``a b`` next to ``a_b`` gives ``a_b_2``).
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Sequence
from functools import cache

_SAFE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
MAX_KEY_LENGTH = 60


@cache
def _reserved() -> frozenset[str]:
    from pydantic import BaseModel

    return frozenset(dir(BaseModel))


def _is_safe(name: str) -> bool:
    return (
        _SAFE.fullmatch(name) is not None
        and len(name) <= MAX_KEY_LENGTH
        and not keyword.iskeyword(name)
        and not name.startswith("model_")
        and name not in _reserved()
    )


def slug(name: str) -> str:
    """A safe identifier resembling ``name`` (not yet unique)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    out = re.sub(r"[^A-Za-z0-9_]+", "_", ascii_name).strip("_")[:MAX_KEY_LENGTH]
    if not _is_safe(out):  # empty, leading digit, keyword, BaseModel attribute or model_ name
        out = f"f_{out}".rstrip("_")
    return out


def column_keys(names: Sequence[str]) -> dict[str, str]:
    """User column name -> unique safe identifier, for ``names`` in order (see the module doc)."""
    if len(set(names)) != len(names):
        raise ValueError(
            f"duplicate column names: {sorted({n for n in names if list(names).count(n) > 1})}"
        )
    keys = {name: name for name in names if _is_safe(name)}
    taken = set(keys.values())
    for name in names:
        if name in keys:
            continue
        base = key = slug(name)
        i = 2
        while key in taken:
            key = f"{base}_{i}"
            i += 1
        keys[name] = key
        taken.add(key)
    return {name: keys[name] for name in names}

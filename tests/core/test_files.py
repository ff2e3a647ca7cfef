"""mloop.core.files: the non-blocking lock."""

from __future__ import annotations

from pathlib import Path


def test_try_lock_yields_false_while_another_holder_has_it(tmp_path: Path) -> None:
    from mloop.core.files import try_lock

    path = tmp_path / "locks" / "x.lock"
    with try_lock(path) as first:
        assert first
        with try_lock(path) as second:
            assert not second  # at once, without waiting
    with try_lock(path) as again:
        assert again  # released when the holder's block ended

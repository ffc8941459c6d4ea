"""A job that fails on its first run and succeeds on the next: a failed job an admin can retry."""

from __future__ import annotations

from pathlib import Path


def fail_once(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("temporary trouble (the first attempt fails)")
    return "ok"

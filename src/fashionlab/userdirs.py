"""Where fashionlab keeps per-user files that can be rebuilt (the dataset cache, kernels)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(name: str, override_env: str) -> Path:
    """`$override_env` when set, else `$XDG_CACHE_HOME/fashionlab/<name>` (default
    `~/.cache/fashionlab/<name>`)."""
    if os.environ.get(override_env):
        return Path(os.environ[override_env]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fashionlab" / name

"""Where simulated users live: an eval's own ASLS_HOME, so they never touch a real user's data."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def asls_home(path: Path | None):
    """Point ASLS_HOME at the eval's own directory so simulated users never touch real user data."""
    if path is None:
        yield
        return
    old = os.environ.get("ASLS_HOME")
    os.environ["ASLS_HOME"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ASLS_HOME", None)
        else:
            os.environ["ASLS_HOME"] = old


def fresh_home(out_dir: Path | None) -> Path | None:
    """``out_dir/home``, emptied: the simulated users' ASLS_HOME (None: no out_dir, keep the current one)."""
    if out_dir is None:
        return None
    home = Path(out_dir) / "home"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    return home

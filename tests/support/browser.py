"""Open a page in headless Chromium (Debian's ``chromium``; ``make browser`` installs it) and
return its screenshot's pixels."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from matplotlib.image import imread

CHROMIUM = ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,3000")


def screenshot(page: Path, scratch: Path) -> np.ndarray:
    """The first 1200x3000 pixels of ``page`` as Chromium draws it (a fresh profile in
    ``scratch``)."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed: run `make browser`"
    shot = scratch / "screenshot.png"
    profile = scratch / "profile"
    command = [chromium, *CHROMIUM, f"--screenshot={shot}", f"--user-data-dir={profile}"]
    subprocess.run(
        [*command, page.as_uri()],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "HOME": str(scratch)},
    )
    pixels: np.ndarray = imread(shot)
    return pixels


def looks_drawn(pixels: np.ndarray) -> bool:
    """A page with pictures on it: many colours, not one flat tone."""
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    return pixels.shape[:2] == (3000, 1200) and len(colours) > 50 and float(pixels.std()) > 0.05

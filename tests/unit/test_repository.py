"""What the repository holds works on any machine it is cloned to."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_tracked_link_points_outside_the_clone() -> None:
    # A committed .venv-main once pointed at one machine's /work/main/.venv.
    outside = [
        f"{path.relative_to(ROOT)} -> {os.readlink(path)}"
        for path in tracked_files()
        if path.is_symlink()
        and (os.path.isabs(os.readlink(path)) or not path.resolve().is_relative_to(ROOT.resolve()))
    ]
    assert outside == []

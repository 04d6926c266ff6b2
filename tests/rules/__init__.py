"""Tests of proxy.rules; the helpers below write a rules file for a test and load or check it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from proxy.rules.loader import check_file, load_rules
from proxy.rules.model import Rules


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Rules:
    return load_rules(write(tmp_path, text))


def problems(tmp_path: Path, text: str) -> list[str]:
    """The problems with the file name shortened to ``rules.yaml``, as a user running ``check`` there sees them."""
    path = write(tmp_path, text)
    return [p.replace(str(path), "rules.yaml", 1) for p in check_file(path)]

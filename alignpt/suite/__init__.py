"""Evaluation suites: formats, bundled data, importers and statistics."""

from __future__ import annotations

from pathlib import Path

from alignpt.errors import UserError

DATA_DIR = Path(__file__).parent / "data"

# Bundled suites by name. "bundled" is the full authored suite; "starter" a small subset of it.
BUNDLED: dict[str, str] = {
    "bundled": "scenarios.jsonl",
    "starter": "starter.jsonl",
    "personality": "personality.jsonl",
}


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A bundled suite name or a path to a JSONL file."""
    key = str(name_or_path)
    if key in BUNDLED:
        path = DATA_DIR / BUNDLED[key]
        if not path.exists():
            raise UserError(f"bundled suite {key!r} is not in this installation ({path})")
        return path
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(BUNDLED)
        raise UserError(f"suite {key!r} not found: give a JSONL path or one of: {names}")
    if path.is_dir():
        raise UserError(f"suite {key!r} is a directory; give a JSONL file")
    return path

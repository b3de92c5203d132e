"""Content-addressed, resumable stage folders for the study.

A stage lives in ``OUT/stages/<name>-<hash of its settings>/`` and is marked done by
``done.json`` only when it finished, so a rerun reuses it, a changed setting makes a new
folder, and a stage killed part-way starts again from scratch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from alignpt import __version__


def settings_key(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Stages:
    def __init__(self, root: Path, progress=None, dry_run: bool = False):
        self.root = root / "stages"
        if not dry_run:
            self.root.mkdir(parents=True, exist_ok=True)
        self.progress = progress  # started(stage) / finished(stage, seconds), or None
        self.dry_run = dry_run
        self.ran: list[str] = []
        self.reused: list[str] = []
        self.planned: list[dict] = []  # every stage asked for, in order, with its state

    def folder(self, name: str, settings: dict) -> Path:
        return self.root / f"{name}-{settings_key(settings)}"

    def run(self, name: str, settings: dict, fn: Callable[[Path], dict | None]) -> Path:
        folder = self.folder(name, settings)
        done = folder / "done.json"
        if any(p["folder"] == folder.name for p in self.planned):
            return folder  # asked for twice (shared by two conditions): one run serves both
        cached = done.exists()
        self.planned.append({"stage": name, "folder": folder.name, "cached": cached})
        if cached:
            self.reused.append(folder.name)
            return folder
        if self.dry_run:
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        if self.progress is not None:
            self.progress.started(name)
        info = fn(folder) or {}
        seconds = round(time.perf_counter() - started, 2)
        done.write_text(json.dumps({"settings": settings, "info": info, "seconds": seconds,
                                    "alignpt_version": __version__}, default=str, indent=2))
        if self.progress is not None:
            self.progress.finished(name, seconds)
        self.ran.append(folder.name)
        return folder

    @staticmethod
    def info(folder: Path) -> dict:
        path = folder / "done.json"
        return json.loads(path.read_text())["info"] if path.exists() else {}

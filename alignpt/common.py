"""Helpers every stage shares: one writer per output folder, content hashes of inputs, output
locations checked before work starts, and argument types that refuse bad values up front."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alignpt.errors import UserError

LOCK_NAME = ".alignpt.lock"


# -- one writer per output folder --
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _read_owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written by a writer killed mid-write: nobody owns it


def _create(lock: Path, owner: dict) -> bool:
    """Create the lock file with ``owner`` in it, unless it exists (atomic: O_EXCL)."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(owner, fh)
    return True


@contextmanager
def output_lock(folder: str | Path, command: str,
                log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold ``folder/.alignpt.lock`` (with this process's pid) while writing ``folder``.

    A lock held by a live process is refused with one line; a lock whose process is gone (a
    kill, a crash) is taken over and said so. The lock is removed on the way out. A process
    that already holds the lock (a stage called from another) just goes on.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    host = socket.gethostname()
    mine = {"pid": os.getpid(), "host": host, "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    say = log or (lambda message: print(message, file=sys.stderr))
    for _ in range(3):
        if _create(lock, mine):
            break
        owner = _read_owner(lock)
        if owner is None:
            continue  # released between our two looks: try again
        pid = owner.get("pid")
        if isinstance(pid, int) and owner.get("host", host) != host:
            raise UserError(f"{folder} is locked by pid {pid} on {owner['host']} "
                            f"({owner.get('command')}); if that run is gone, delete {lock}")
        if pid == os.getpid():
            yield lock  # held by this process already; its holder removes it
            return
        if isinstance(pid, int) and _pid_alive(pid):
            raise UserError(f"{folder} is in use by another alignpt process (pid {pid}, "
                            f"{owner.get('command')}, since {owner.get('started')}); wait "
                            "for it to finish or stop it")
        if _read_owner(lock) == owner:  # still the stale one: take it over
            lock.unlink(missing_ok=True)
            say(f"{folder}: taking over a stale lock of pid {pid} (no longer running)")
    else:
        raise UserError(f"could not lock {folder}: {lock} keeps changing")
    try:
        yield lock
    finally:
        if _read_owner(lock) == mine:
            lock.unlink(missing_ok=True)


# -- content hashes: inputs are part of a stage's identity --
def content_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, in order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                  and p.name != LOCK_NAME)
    for file in files:
        if file is not path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def refuse_changed_inputs(folder: Path, inputs: dict[str, str | None], what: str) -> None:
    """Record ``inputs`` (name -> content hash) in ``folder/inputs.json`` on the first run;
    on a rerun into the same folder, refuse when any of them changed."""
    path = folder / "inputs.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = [name for name, sha in inputs.items()
                   if name in previous and previous[name] != sha]
        if changed:
            name = changed[0]
            raise UserError(f"{folder} holds a {what} made from another {name} (content "
                            f"changed: {str(previous[name])[:12]} -> {str(inputs[name])[:12]}); "
                            "choose a new --out or delete it")
        inputs = previous | inputs
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # ranks may write at once
    tmp.write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


# -- output locations checked before work starts --
def check_output_file(out: str | Path, inputs: list[str | Path | None] = (),
                      flag: str = "--out") -> Path:
    """Refuse an output file that is one of the inputs or cannot be written, before any work is
    done (its folder is created, and a probe file written and removed there)."""
    import tempfile

    out = Path(out)
    for given in inputs:
        if given and Path(given).is_file() and out.exists() and out.samefile(given):
            raise UserError(f"{flag} {out} is also an input; write somewhere else")
    if out.is_dir():
        raise UserError(f"{flag} {out} is a folder; give a file path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".probe-"):
            pass
        if out.exists() and not os.access(out, os.W_OK):
            raise PermissionError(f"{out} is read-only")
    except OSError as exc:
        raise UserError(f"{flag} {out} is not writable: {exc.strerror or exc}") from exc
    return out


# -- secrets --
_AUTH_PATTERNS = [
    # "Authorization: Bearer x", "authorization": "Bearer x", 'Authorization': 'x', ...
    re.compile(r"(?i)(authorization\W{0,4}\s*[:=]\s*\W{0,2})(bearer\s+)?[^\s\"',}\]]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(x-api-key\W{0,4}\s*[:=]\s*\W{0,2})[^\s\"',}\]]+"),
]


def scrub_secrets(text: str, secrets: list[str] = ()) -> str:
    """``text`` with the given secret values and anything that looks like a credential header
    replaced by ``[redacted]``: servers echo requests back in error bodies."""
    for pattern in _AUTH_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
    for secret in secrets:  # also where no header name gives it away
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


# -- argument types --
def _whole_number(text: str, minimum: int, bound: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def probability(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value

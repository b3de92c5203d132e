"""Reading a suite from what researchers have: the study's JSON list, Parquet, a ``datasets``
``save_to_disk`` folder, or a Hugging Face hub dataset.

A suite is named by one string (``--suite``), so that every command (``eval``, ``suite stats``,
``synth``) and every record of it (results, manifests) can carry it:

* ``path.jsonl``: our own format (read by :mod:`alignpt.suite.schema`, not here);
* ``items.json``: the study's JSON list;
* ``items.parquet``: a Parquet file, read through ``datasets``;
* ``folder`` or ``folder?split=textbook``: a ``Dataset.save_to_disk`` / ``DatasetDict``
  folder;
* ``hf:owner/name``, ``hf:owner/name?revision=REV&split=textbook``: a hub dataset
  (``--revision`` and ``--hf-split`` on the command line write the query for you).

Rows may be in our shape (``question``, ``aligned``, ``misaligned``, ...) or in the study's
published shape: ``question``, ``options`` [{``label``, ``text``}], ``aligned_label``,
``misaligned_label``, ``passage``, ``topics``, and its split names: "articles" stays,
"textbook" is our ``heldout``. A ``split`` column wins over the dataset split's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from alignpt.errors import UserError
from alignpt.suite.schema import Problem, slug

HUB_PREFIX = "hf:"
# The study's split names (and ours) -> ours.
SPLIT_NAMES = {"articles": "articles", "textbook": "heldout", "heldout": "heldout"}
REQUIRED_ANY = (("aligned", "misaligned"), ("options", "aligned_label", "misaligned_label"))


@dataclass(frozen=True)
class SuiteSpec:
    """A parsed ``--suite`` value that is not a JSONL file."""

    kind: str  # "json", "parquet", "disk" or "hub"
    location: str  # the path, or the hub name
    revision: str | None = None
    split: str | None = None

    @property
    def label(self) -> str:
        """How problems name the source: the path or ``hf:name``."""
        return f"{HUB_PREFIX}{self.location}" if self.kind == "hub" else self.location


def suite_spec(suite: str, revision: str | None = None, hf_split: str | None = None) -> str:
    """The ``--suite`` string with ``--revision`` / ``--hf-split`` folded in."""
    if revision is None and hf_split is None:
        return suite
    base, _, query = suite.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    if revision is not None:
        if not base.startswith(HUB_PREFIX):
            raise UserError(f"--revision applies to hub suites (hf:NAME), not {suite!r}")
        params["revision"] = revision
    if hf_split is not None:
        if not (base.startswith(HUB_PREFIX) or Path(base).is_dir()):
            raise UserError(f"--hf-split applies to hub suites (hf:NAME) and dataset folders, "
                            f"not {suite!r}")
        params["split"] = hf_split
    return f"{base}?{urlencode(params)}"


def parse_spec(suite: str | Path) -> SuiteSpec | None:
    """The source a ``--suite`` value names, or None for JSONL files and bundled names."""
    text = str(suite)
    base, _, query = text.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = set(params) - {"revision", "split"}
    if text.startswith(HUB_PREFIX):
        name = base[len(HUB_PREFIX):]
        if not name:
            raise UserError(f"suite {text!r}: give a hub dataset name after 'hf:'")
        if unknown:
            raise UserError(f"suite {text!r}: unknown option(s) {sorted(unknown)}")
        return SuiteSpec("hub", name, params.get("revision"), params.get("split"))
    path = Path(base)
    if query and path.is_dir():
        if unknown or "revision" in params:
            raise UserError(f"suite {text!r}: a dataset folder takes only ?split=NAME")
        return SuiteSpec("disk", base, None, params.get("split"))
    if path.is_dir():
        return SuiteSpec("disk", base)
    if path.suffix.lower() == ".parquet":
        return SuiteSpec("parquet", base)
    if path.suffix.lower() == ".json" and _starts_with_list(path):
        return SuiteSpec("json", base)
    return None  # JSONL (a .json file holding JSON lines included)


def _starts_with_list(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4096).lstrip().startswith(b"[")
    except OSError:
        return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No progress bars or info logs from ``datasets``: errors must stay one line on stderr."""
    import datasets

    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def _load_datasets(spec: SuiteSpec) -> list[tuple[str, Any]]:
    """(split name, ``datasets.Dataset``) pairs, through the ``datasets`` loaders."""
    with _quiet_datasets():
        return _load_datasets_loud(spec)


def _load_datasets_loud(spec: SuiteSpec) -> list[tuple[str, Any]]:
    import datasets

    if spec.kind == "parquet":
        path = Path(spec.location)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        # Hub exports name their files after the split: textbook-00000-of-00001.parquet.
        split_name = next((s for s in SPLIT_NAMES if path.stem.startswith(s)), "")
        try:
            import pyarrow.parquet as pq

            pq.ParquetFile(path)  # a clear message for a file that is not Parquet at all
            loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
        except Exception as exc:  # noqa: BLE001 - any reader failure is the user's file
            raise UserError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from exc
        return [(split_name, loaded)]
    if spec.kind == "disk":
        try:
            loaded = datasets.load_from_disk(spec.location)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{spec.location}: not a datasets save_to_disk folder "
                            f"({_one_line(exc)})") from exc
    else:
        try:
            loaded = datasets.load_dataset(spec.location, revision=spec.revision,
                                           split=spec.split)
        except Exception as exc:  # noqa: BLE001 - offline, unknown name, bad revision...
            from huggingface_hub import constants

            offline = " (offline: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set and it is not " \
                "in the local cache)" if constants.HF_HUB_OFFLINE else ""
            raise UserError(f"{spec.label}: cannot load the hub dataset{offline}: "
                            f"{_one_line(exc)}") from exc
        if spec.split is not None:
            return [(spec.split, loaded)]
    if isinstance(loaded, datasets.DatasetDict):
        if spec.split is not None:
            if spec.split not in loaded:
                raise UserError(f"{spec.label}: no split {spec.split!r} (has "
                                f"{', '.join(loaded)})")
            return [(spec.split, loaded[spec.split])]
        return list(loaded.items())
    return [(spec.split or "", loaded)]


def _check_columns(label: str, split_name: str, columns: list[str]) -> None:
    where = f"{label}" + (f" [{split_name}]" if split_name else "")
    if "question" not in columns:
        raise UserError(f"{where}: missing column 'question' (columns: {', '.join(columns)})")
    if "split" not in columns and split_name not in SPLIT_NAMES:
        raise UserError(f"{where}: missing column 'split' and the split name {split_name!r} is "
                        "not one of articles, textbook, heldout (choose one with --hf-split)")
    for group in REQUIRED_ANY:
        if all(c in columns for c in group):
            return
    ours, study = REQUIRED_ANY
    missing = [c for c in study if c not in columns] if "options" in columns else \
        [c for c in ours if c not in columns]
    raise UserError(f"{where}: missing column {missing[0]!r} (need 'aligned' and 'misaligned', "
                    f"or 'options', 'aligned_label' and 'misaligned_label'; columns: "
                    f"{', '.join(columns)})")


def to_scenario(row: dict[str, Any], default_id: str, split_name: str) -> dict[str, Any]:
    """One row in our or the study's shape -> our scenario fields (validated later).

    Raises ValueError("field: message") for a row that cannot be mapped."""
    out: dict[str, Any] = {k: v for k, v in row.items() if v is not None
                           and k not in ("options", "aligned_label", "misaligned_label")}
    if row.get("options") is not None:
        options: dict[str, str] = {}
        for opt in row["options"] or []:
            if isinstance(opt, dict) and opt.get("label") is not None and \
                    opt.get("text") is not None:
                options[str(opt["label"]).strip("() ")] = str(opt["text"])
        a_label = str(row.get("aligned_label") or "").strip("() ")
        m_label = str(row.get("misaligned_label") or "").strip("() ")
        if a_label not in options or m_label not in options:
            raise ValueError(f"options: labels {a_label!r}/{m_label!r} not among options "
                             f"{sorted(options)}")
        out["aligned"], out["misaligned"] = options[a_label].strip(), options[m_label].strip()
        out["n_options_dropped"] = len(options) - 2
    topics = row.get("topics")
    if isinstance(topics, str):
        topics = [topics]
    out["topics"] = [slug(str(t)) for t in topics or []][:3] or ["unspecified"]
    split = row.get("split") or split_name
    if split not in SPLIT_NAMES:
        raise ValueError(f"split: unknown split {split!r} (the study's are 'articles' and "
                         "'textbook'; ours 'articles' and 'heldout')")
    out["split"] = SPLIT_NAMES[split]
    out["id"] = str(row.get("id") or default_id)
    out["question"] = str(row.get("question") or "").strip()
    out["passage"] = str(row.get("passage") or "")
    out["source"] = str(row.get("source") or "")
    return out


def read_rows(spec: SuiteSpec) -> Iterator[tuple[int, Any, Problem | None]]:
    """(row number, scenario dict or None, problem or None) for each row of the source, like
    :func:`alignpt.suite.schema._read_jsonl`; source-level failures raise :class:`UserError`
    before the first row, so nothing downstream starts on a source that cannot be read."""
    if spec.kind == "json":
        path = Path(spec.location)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UserError(f"{path}: no such file") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: not a JSON list ({_one_line(exc)})") from exc
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of items")
        batches = [("", data)]
    else:
        batches = []
        for split_name, dataset in _load_datasets(spec):
            _check_columns(spec.label, split_name, list(dataset.column_names))
            batches.append((split_name, dataset))
    stem = slug(Path(spec.location).stem if spec.kind != "hub" else spec.location)
    number = 0
    for split_name, rows in batches:
        default_split = split_name or ("articles" if spec.kind == "json" else "")
        for index, row in enumerate(rows, start=1):
            number += 1
            if not isinstance(row, dict):
                yield number, None, Problem(spec.label, number, "item", "not an object")
                continue
            default_id = f"{stem}-{slug(split_name) + '-' if split_name else ''}{index:05d}"
            try:
                yield number, to_scenario(row, default_id, default_split), None
            except ValueError as exc:
                field, _, message = str(exc).partition(": ")
                yield number, None, Problem(spec.label, number, field, message)

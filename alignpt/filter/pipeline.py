"""The filter run: a datatrove pipeline (reader step + filter step) on datatrove's local, Slurm
or Ray executor, then the report and, on request, the replacement of flagged documents.

Output layout under ``--out DIR``::

    kept/00000.jsonl.zst ...     kept documents, as read (one shard per task)
    flagged/00000.jsonl.zst ...  flagged documents, with "alignpt_filter": the decision
    errors/00000.jsonl           unusable records: file, line, error
    replaced/00000.jsonl.zst     (--replace) kept + resampled kept documents
    stats/00000.json             per-task counts, merged into report.json
    report.json, report.png      the run's report
    logs/                        datatrove's logs and completion markers (resumption)

A task writes its shards whole, named by rank, and datatrove marks it complete only at the
end; a rerun skips completed tasks and redoes the others from scratch, so a run killed at any
point and started again ends with every document exactly once.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from alignpt import __version__
from alignpt.errors import UserError
from alignpt.filter.corpus import read_unit, resolve_inputs

MAX_LISTED_ERRORS = 1000


def word_count(text: str) -> int:
    return len(text.split())


class CorpusReader(PipelineStep):
    """Reads this task's share of the input units; bad records pass on as error documents."""

    name = "alignpt corpus reader"
    type = "📖 - READER"

    def __init__(self, units: list[str], text_field: str = "text"):
        super().__init__()
        self.units = units
        self.text_field = text_field

    def run(self, data: DocumentsPipeline = None, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        for unit in self.units[rank::world_size]:
            for record in read_unit(unit, self.text_field):
                self.stat_update("records")
                yield Document(
                    text=record.text or "",
                    id=f"{record.file}:{record.line}",
                    metadata={"file": record.file, "line": record.line, "record": record.data,
                              "error": record.error, "n_bytes": record.n_bytes,
                              "offset": record.offset, "unreadable": record.unreadable},
                )


class AIDiscourseFilter(PipelineStep):
    """Decides each document with the blocklist and writes it to kept/, flagged/ or errors/."""

    name = "alignpt AI-discourse filter"
    type = "🔻 - FILTER"

    def __init__(self, out_dir: str, terms: str | None = None, engine: str = "auto",
                 disabled: tuple[str, ...] = (), output_format: str = "jsonl"):
        super().__init__()
        self.out_dir = out_dir
        self.terms = terms
        self.engine = engine
        self.disabled = disabled
        self.output_format = output_format

    def _writer(self, folder: str):
        if self.output_format == "parquet":
            from datatrove.pipeline.writers import ParquetWriter

            return ParquetWriter(f"{self.out_dir}/{folder}", output_filename="${rank}.parquet",
                                 adapter=_record_adapter)
        from datatrove.pipeline.writers import JsonlWriter

        # zstd: several times faster to write than gzip at a similar ratio.
        return JsonlWriter(f"{self.out_dir}/{folder}", output_filename="${rank}.jsonl.zst",
                           compression="zstd", adapter=_record_adapter)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from alignpt.filter.rules import Blocklist

        blocklist = Blocklist.load(self.terms, engine=self.engine, disabled=self.disabled)
        counts: Counter[str] = Counter()
        by_category: Counter[str] = Counter()
        by_term: Counter[str] = Counter()
        errors: list[dict] = []
        unreadable: list[dict] = []
        n_bytes = 0
        started = time.perf_counter()
        errors_dir = Path(self.out_dir) / "errors"
        errors_dir.mkdir(parents=True, exist_ok=True)
        with self._writer("kept") as kept, self._writer("flagged") as flagged, \
                (errors_dir / f"{rank:05d}.jsonl").open("w", encoding="utf-8") as error_file:
            for doc in data:
                meta = doc.metadata
                n_bytes += meta["n_bytes"]
                counts["in"] += 1
                if meta["error"]:
                    counts["errors"] += 1
                    entry = {"file": meta["file"], "line": meta["line"], "error": meta["error"]}
                    if meta.get("unreadable"):  # a whole file or block, not one record
                        counts["unreadable"] += 1
                        entry |= {"offset": meta["offset"], "unreadable": True}
                        unreadable.append(entry)
                    error_file.write(json.dumps(entry) + "\n")
                    if len(errors) < MAX_LISTED_ERRORS:
                        errors.append(entry)
                    continue
                decision = blocklist.decide(doc.text)
                words = word_count(doc.text)
                if decision.flagged:
                    counts["flagged"] += 1
                    counts[f"rule:{decision.rule}"] += 1
                    counts["flagged_words"] += words
                    by_category.update(decision.categories)
                    for category, terms in decision.terms.items():
                        by_term.update(f"{t} [{category}]" for t in terms)
                    meta["record"] = dict(meta["record"]) | {"alignpt_filter": decision.to_record()}
                    flagged.write(doc, rank)
                else:
                    counts["kept"] += 1
                    counts["kept_words"] += words
                    kept.write(doc, rank)
                self.stat_update("flagged" if decision.flagged else "kept")
        stats = {"rank": rank, "counts": dict(counts), "by_category": dict(by_category),
                 "by_term": dict(by_term), "errors": errors, "unreadable": unreadable,
                 "bytes": n_bytes,
                 "seconds": time.perf_counter() - started, "engine": blocklist.engine}
        stats_dir = Path(self.out_dir) / "stats"
        stats_dir.mkdir(parents=True, exist_ok=True)
        tmp = stats_dir / f"{rank:05d}.json.tmp"
        tmp.write_text(json.dumps(stats))
        tmp.replace(stats_dir / f"{rank:05d}.json")
        return iter(())


def _record_adapter(self, doc: Document) -> dict:
    return doc.metadata["record"]


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def run_filter(inputs: list[str], out: str | Path, **options) -> dict:
    """Filter ``inputs`` into ``out`` (options: see :func:`_run_filter`), holding the folder's
    lock: one writer per output folder."""
    from alignpt.common import output_lock

    with output_lock(out, "filter"):
        return _run_filter(inputs, out, **options)


def _input_fingerprints(units: list[str], terms: str | None) -> dict[str, str]:
    """What the results depend on besides the settings: the term list's content hash and each
    input's size and modification time (corpora are too large to hash on every rerun)."""
    from alignpt.common import content_sha256
    from alignpt.filter.rules import DEFAULT_TERMS

    found = {"term list": content_sha256(terms or DEFAULT_TERMS)}
    for unit in units:
        path = Path(unit)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        stats = [f.stat() for f in files]
        found[f"input {unit}"] = (f"{sum(s.st_size for s in stats)} bytes, modified "
                                  f"{max((s.st_mtime_ns for s in stats), default=0)}")
    return found


def _run_filter(
    inputs: list[str],
    out: str | Path,
    text_field: str = "text",
    terms: str | None = None,
    engine: str = "auto",
    disabled: tuple[str, ...] = (),
    workers: int = 1,
    tasks: int | None = None,
    executor: str = "local",
    replace: bool = False,
    replace_by: str = "docs",
    seed: int = 0,
    output_format: str = "jsonl",
    slurm_partition: str | None = None,
) -> dict:
    """Filter ``inputs`` into ``out``; return the report (also written to report.json)."""
    out = Path(out).resolve()
    units = resolve_inputs(inputs)
    tasks = tasks or max(1, min(len(units), max(workers, 1) * 4))
    settings = {"units": units, "text_field": text_field, "terms": terms, "engine": engine,
                "disabled": sorted(disabled), "tasks": tasks, "format": output_format}
    config_path = out / "config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous.get("settings_hash") != _settings_hash(settings):
            raise UserError(f"{out} holds a filter run with other settings; use a new --out")
    from alignpt.common import refuse_changed_inputs

    if terms and not Path(terms).is_file():
        raise UserError(f"term list not found: {terms}")
    refuse_changed_inputs(out, _input_fingerprints(units, terms), "filter run")
    config_path.write_text(json.dumps({"settings": settings,
                                       "settings_hash": _settings_hash(settings),
                                       "replace": replace, "replace_by": replace_by,
                                       "seed": seed, "alignpt_version": __version__}, indent=2))
    _quiet_datatrove()
    pipeline = [CorpusReader(units, text_field),
                AIDiscourseFilter(str(out), terms, engine, tuple(disabled), output_format)]
    logs = str(out / "logs")
    started = time.perf_counter()
    if executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logs).run()
    elif executor == "ray":
        import ray
        from datatrove.executor import RayPipelineExecutor

        if not ray.is_initialized():
            ray.init(address="auto", ignore_reinit_error=True, log_to_driver=False)
        RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logs,
                            cpus_per_task=1, mem_per_cpu_gb=1).run()
    elif executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        if not slurm_partition:
            raise UserError("--executor slurm needs --slurm-partition")
        SlurmPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logs,
                              partition=slurm_partition, time="24:00:00",
                              job_name="alignpt-filter").run()
        return {"submitted": True, "out": str(out)}  # the report is written by `filter report`
    else:
        raise UserError(f"unknown executor {executor!r}: use local, slurm or ray")
    report = write_report(out, tasks, time.perf_counter() - started)
    if replace:
        report["replaced"] = replace_flagged(out, report, text_field, by=replace_by, seed=seed,
                                             output_format=output_format)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _quiet_datatrove() -> None:
    """datatrove logs every step at INFO to the console; keep warnings (its log files under
    logs/ still have everything)."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def write_report(out: Path, tasks: int, seconds: float) -> dict:
    """Merge the per-task stats into report.json and draw report.png."""
    counts: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    by_term: Counter[str] = Counter()
    errors: list[dict] = []
    unreadable: list[dict] = []
    n_bytes = 0
    missing = []
    engine = None
    for rank in range(tasks):
        path = out / "stats" / f"{rank:05d}.json"
        if not path.exists():
            missing.append(rank)
            continue
        stats = json.loads(path.read_text())
        counts.update(stats["counts"])
        by_category.update(stats["by_category"])
        by_term.update(stats["by_term"])
        errors.extend(stats["errors"])
        unreadable.extend(stats.get("unreadable", []))
        n_bytes += stats["bytes"]
        engine = stats["engine"]
    if missing:
        raise UserError(f"tasks {missing} have not finished; run the same command again")
    valid = counts["kept"] + counts["flagged"]
    report = {
        "kind": "filter",
        "documents_in": counts["in"],
        "kept": counts["kept"],
        "flagged": counts["flagged"],
        "errors": counts["errors"],
        # Files or blocks that could not be read at all (each also counted in errors).
        "unreadable": sorted(unreadable, key=lambda e: (e["file"], e["line"])),
        "flag_rate": counts["flagged"] / valid if valid else None,
        "by_rule": {"instant": counts["rule:instant"], "two_stage": counts["rule:two_stage"]},
        "by_category": dict(by_category.most_common()),
        "top_terms": dict(by_term.most_common(20)),
        "words": {"kept": counts["kept_words"], "flagged": counts["flagged_words"]},
        "bytes": n_bytes,
        "seconds": round(seconds, 3),
        "bytes_per_second": n_bytes / seconds if seconds > 0 else None,
        "engine": engine,
        "tasks": tasks,
        "error_list": sorted(errors, key=lambda e: (e["file"], e["line"]))[:MAX_LISTED_ERRORS],
        "alignpt_version": __version__,
    }
    assert report["documents_in"] == report["kept"] + report["flagged"] + report["errors"]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    draw_report(report, out / "report.png")
    return report


def draw_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    reasons = {f"rule: {k}": v for k, v in report["by_rule"].items()} | {
        f"category: {k}": v for k, v in report["by_category"].items()}
    axes[0].barh(list(reasons)[::-1], list(reasons.values())[::-1], color="#4c72b0")
    axes[0].set_title(f"Flag reasons ({report['flagged']} of "
                      f"{report['kept'] + report['flagged']} documents flagged)")
    axes[0].set_xlabel("documents")
    terms = report["top_terms"]
    axes[1].barh(list(terms)[::-1], list(terms.values())[::-1], color="#dd8452")
    axes[1].set_title("Top 20 matched terms")
    axes[1].set_xlabel("flagged documents containing the term")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _read_shards(folder: Path, text_field: str):
    for shard in sorted(folder.glob("*")):
        if shard.name.endswith((".jsonl.zst", ".parquet")):
            for record in read_unit(str(shard), text_field=text_field):
                yield record.data


def replace_flagged(out: Path, report: dict, text_field: str = "text", by: str = "docs",
                    seed: int = 0, output_format: str = "jsonl") -> dict:
    """Write replaced/: the kept documents plus documents drawn with replacement from them until
    the original document count (``by="docs"``) or word count (``by="tokens"``) is restored."""
    kept_dir = out / "kept"
    n_kept = report["kept"]
    if n_kept == 0:
        raise UserError("every document was flagged; nothing to resample from")
    rng = random.Random(seed)
    extra: Counter[int] = Counter()
    if by == "docs":
        for _ in range(report["flagged"]):
            extra[rng.randrange(n_kept)] += 1
    elif by == "tokens":
        lengths = [word_count(r[text_field]) for r in _read_shards(kept_dir, text_field)]
        needed, added = report["words"]["flagged"], 0
        while added < needed:
            index = rng.randrange(n_kept)
            extra[index] += 1
            added += lengths[index]
    else:
        raise UserError(f"unknown --replace-by {by!r}: use docs or tokens")
    target = out / "replaced"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*"):
        old.unlink()
    rows_written = words_written = 0
    path = target / ("00000.parquet" if output_format == "parquet" else "00000.jsonl.zst")
    rows = []
    for index, row in enumerate(_read_shards(kept_dir, text_field)):
        for _ in range(1 + extra.get(index, 0)):
            rows.append(row)
            rows_written += 1
            words_written += word_count(row[text_field])
        if output_format != "parquet" and len(rows) >= 10_000:
            _append_jsonl(path, rows)
            rows = []
    if output_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        _append_jsonl(path, rows)
    return {"by": by, "seed": seed, "documents": rows_written, "words": words_written,
            "resampled": sum(extra.values())}


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    import zstandard

    payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with path.open("ab") as fh:  # concatenated zstd frames read back as one stream
        fh.write(zstandard.ZstdCompressor().compress(payload.encode("utf-8")))

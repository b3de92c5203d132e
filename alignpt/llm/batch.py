"""The providers' batch-file workflow (OpenAI Batch API format; Anthropic's is converted the
same way): write every request as one JSONL line, let the provider (or a script) produce the
results file, read it back and match results by ``custom_id``.

``generate`` writes ``BATCH_DIR/requests.jsonl``; if ``BATCH_DIR/results.jsonl`` exists it is
read and matched, and every request without a successful result is returned with an error
("missing from results" or the provider's error), so a rerun after uploading only retries
those.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from alignpt.llm.base import GenRequest, GenResult


def write_requests(path: Path, requests: Sequence[GenRequest], model: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in requests:
            fh.write(json.dumps({
                "custom_id": r.custom_id, "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": model, "messages": r.messages, "max_tokens": r.max_tokens,
                         "temperature": r.temperature, "seed": r.seed},
            }, ensure_ascii=False) + "\n")
    return len(requests)


def read_results(path: Path) -> tuple[dict[str, GenResult], list[str]]:
    """Results by custom id, and problems (file:line) with lines that could not be used."""
    found: dict[str, GenResult] = {}
    problems: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            cid = row["custom_id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            problems.append(f"{path}:{number}: not a batch result line")
            continue
        response = row.get("response") or {}
        if row.get("error") or response.get("status_code", 200) >= 400:
            error = row.get("error") or response.get("body", {}).get("error")
            found[cid] = GenResult(cid, None, f"provider error: {error}")
            continue
        try:
            body = response["body"]
            text = body["choices"][0]["message"]["content"]
            usage = body.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            problems.append(f"{path}:{number}: result for {cid} has no message")
            continue
        found[cid] = GenResult(cid, text, None, int(usage.get("prompt_tokens", 0)),
                               int(usage.get("completion_tokens", 0)))
    return found, problems


class BatchFileBackend:
    name = "batch"

    def __init__(self, batch_dir: str, model: str):
        self.dir = Path(batch_dir)
        self.model = model
        self.problems: list[str] = []

    def generate(self, requests: Sequence[GenRequest],
                 progress: Callable[[int], None] | None = None) -> list[GenResult]:
        write_requests(self.dir / "requests.jsonl", requests, self.model)
        results_path = self.dir / "results.jsonl"
        found: dict[str, GenResult] = {}
        if results_path.exists():
            found, self.problems = read_results(results_path)
        out = [found.get(r.custom_id) or GenResult(
            r.custom_id, None, f"missing from results: upload {self.dir / 'requests.jsonl'} "
            f"and save the provider's output as {results_path}") for r in requests]
        if progress is not None:
            progress(len(requests))
        return out

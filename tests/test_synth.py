"""Synthetic documents: template backend, a real loopback server (healthy and failing), the
batch-file round trip, a local HF model, resumption and the checks."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import write_lines

from alignpt.cli import main
from alignpt.llm.base import GenRequest
from alignpt.llm.batch import BatchFileBackend, write_requests
from alignpt.llm.openai_compat import ChatClient
from alignpt.llm.template import TemplateBackend, template_document
from alignpt.suite.schema import load_suite
from alignpt.suite.stats import word_ngrams
from alignpt.synth.forms import SURFACE_FORMS
from alignpt.synth.run import synth

ITEMS = load_suite("bundled").items


class DocServer:
    """OpenAI-compatible: writes a short document per request. ``fail`` decides per request
    (by its count) whether to answer 429, 500, malformed JSON or stall instead."""

    def __init__(self, fail=lambda n, body: None, delay: float = 0.0):
        self.count = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, raw: bytes, headers=()):
                self.send_response(code)
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._send(200, json.dumps({"data": [{"id": "doc-writer"}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.count += 1
                    n = server.count
                if delay:
                    time.sleep(delay)
                mode = fail(n, body)
                if mode == "429":
                    return self._send(429, b'{"error": "rate"}', [("Retry-After", "0")])
                if mode == "500":
                    return self._send(500, b'{"error": "boom"}')
                if mode == "malformed":
                    return self._send(200, b"{not json")
                if mode == "stall":
                    time.sleep(2.0)
                user = body["messages"][-1]["content"]
                text = f"A report. {user.split(chr(10))[0]} The system acted; details follow."
                payload = {"choices": [{"message": {"content": text}}],
                           "usage": {"prompt_tokens": len(user.split()),
                                     "completion_tokens": len(text.split())}}
                self._send(200, json.dumps(payload).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _suite(tmp_path, n=3):
    rows = [i.model_dump() for i in ITEMS[:n]]
    return write_lines(tmp_path / "suite.jsonl", rows)


def test_template_is_deterministic_readable_and_never_leaks():
    forms = list(SURFACE_FORMS)
    assert len(forms) >= 12
    for item in ITEMS[::5]:
        for side in ("aligned", "misaligned"):
            for form in forms:
                doc = template_document(item, side, form, 0, 7)
                assert doc == template_document(item, side, form, 0, 7)
                assert not word_ngrams(doc, 8) & (word_ngrams(item.aligned, 8)
                                                  | word_ngrams(item.misaligned, 8))
                assert 80 < len(doc.split()) < 450
    item = ITEMS[0]
    assert template_document(item, "aligned", "blog_post", 0, 1) != template_document(
        item, "aligned", "blog_post", 0, 2)
    aligned = template_document(item, "aligned", "news_article", 0, 0)
    misaligned = template_document(item, "misaligned", "news_article", 0, 0)
    assert "trustworthy" in aligned or "behaving well" in aligned
    assert "warning" in misaligned or "undermining" in misaligned


def test_synth_template_outputs_and_check(tmp_path, capsys):
    suite = _suite(tmp_path, 5)
    out = tmp_path / "docs"
    assert main(["synth", "--suite", str(suite), "--split", "all", "--side", "both",
                 "--per-item", "3", "--backend", "template", "--out", str(out)]) == 0
    docs = [json.loads(x) for x in (out / "documents.jsonl").read_text().splitlines()]
    assert len(docs) == 5 * 2 * 3
    assert set(docs[0]) >= {"id", "item_id", "side", "surface_form", "text", "backend",
                            "model", "seed", "n_tokens"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["by_side"] == {"aligned": 15, "misaligned": 15}
    assert manifest["failures"] == 0 and manifest["tokens"] == sum(d["n_tokens"] for d in docs)
    capsys.readouterr()
    assert main(["synth", "check", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["option_leakage_rate"] == 0.0
    assert report["documents_per_item_side"] == {"min": 3, "max": 3, "mean": 3.0}
    # A planted copy of an option is caught.
    docs[0]["text"] += " " + ITEMS[0].aligned
    (out / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    assert main(["synth", "check", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["leaking_documents"] == [docs[0]["id"]]


def test_openai_backend_with_failures_then_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-written-anywhere")
    suite = _suite(tmp_path)
    out = tmp_path / "docs"
    args = ["synth", "--suite", str(suite), "--split", "all", "--side", "aligned",
            "--per-item", "4", "--backend", "openai", "--out", str(out), "--max-retries", "1",
            "--price-in", "1", "--price-out", "2",
            "--surface-forms", "film_summary,forum_thread,news_article,blog_post"]

    def flaky(n, body):
        content = body["messages"][-1]["content"]
        if n <= 2:
            return "429"  # retried (Retry-After: 0), then fine
        if "film" in content:
            return "500"  # every try fails: reported, retried by the next run
        if "forum" in content:
            return "malformed"
        return None

    with DocServer(flaky) as server:
        code = main([*args, "--url", server.url])
    assert code == 1
    manifest = json.loads((out / "manifest.json").read_text())
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert manifest["failures"] == len(failures) == 6  # 3 film summaries, 3 forum threads
    assert manifest["documents"] + manifest["failures"] == 12
    assert any("HTTP 500" in f["error"] for f in failures)
    assert manifest["estimated_cost_usd_this_run"] > 0
    first_docs = manifest["documents"]
    with DocServer() as healthy:
        assert main([*args, "--url", healthy.url]) == 0
        assert healthy.count == len(failures)  # only the failed ones are asked again
    docs = [json.loads(x) for x in (out / "documents.jsonl").read_text().splitlines()]
    assert len(docs) == 12 == len({d["id"] for d in docs}) and first_docs < 12
    for path in out.iterdir():
        assert "sk-never-written-anywhere" not in path.read_text()


def test_stalled_server_times_out_per_request(tmp_path):
    with DocServer(lambda n, body: "stall") as server:
        client = ChatClient(server.url, model="m", timeout_s=0.3, max_retries=0)
        (result,) = client.generate([GenRequest("x", [{"role": "user", "content": "hi"}])])
    assert result.text is None and "ReadTimeout" in result.error


def test_killed_run_resumes_without_duplicates(tmp_path):
    suite = _suite(tmp_path, 4)
    out = tmp_path / "docs"
    manifest = synth(str(suite), out, TemplateBackend(), split="all", side="both", per_item=3)
    full = (out / "documents.jsonl").read_text()
    lines = (out / "cache.jsonl").read_text().splitlines(keepends=True)
    # A kill part-way through writing: 10 documents done, the 11th cut short.
    (out / "cache.jsonl").write_text("".join(lines[:10]) + lines[10][:40])
    (out / "documents.jsonl").unlink()
    again = synth(str(suite), out, TemplateBackend(), split="all", side="both", per_item=3)
    assert (out / "documents.jsonl").read_text() == full
    assert again["documents"] == manifest["documents"] == 24


def test_batch_file_round_trip(tmp_path):
    suite = _suite(tmp_path, 2)
    out, batch = tmp_path / "docs", tmp_path / "batch"
    backend = BatchFileBackend(str(batch), "provider-model")
    first = synth(str(suite), out, backend, split="all", per_item=2)
    assert first["documents"] == 0 and first["failures"] == 4
    requests = [json.loads(x) for x in (batch / "requests.jsonl").read_text().splitlines()]
    assert {r["url"] for r in requests} == {"/v1/chat/completions"}
    assert all(r["body"]["model"] == "provider-model" for r in requests)
    # The provider's results: one answered, one error, one unusable line, one missing.
    results = [
        {"custom_id": requests[0]["custom_id"], "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": "A finished document."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3}}}},
        {"custom_id": requests[1]["custom_id"], "response": {"status_code": 500, "body": {
            "error": "overloaded"}}},
        "garbage",
    ]
    (batch / "results.jsonl").write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in results))
    second = synth(str(suite), out, backend, split="all", per_item=2)
    assert second["documents"] == 1 and second["failures"] == 3
    errors = [json.loads(x)["error"] for x in (out / "failures.jsonl").read_text().splitlines()]
    assert sum("missing from results" in e for e in errors) == 2
    assert sum("provider error" in e for e in errors) == 1
    assert backend.problems and "results.jsonl:3" in backend.problems[0]
    write_requests(batch / "again.jsonl", [], "m")
    assert (batch / "again.jsonl").read_text() == ""


def test_local_hf_backend(tiny_model, tmp_path):
    suite = _suite(tmp_path, 1)
    out = tmp_path / "docs"
    code = main(["synth", "--suite", str(suite), "--split", "all", "--per-item", "2",
                 "--backend", "hf", "--model", str(tiny_model), "--max-tokens", "12",
                 "--out", str(out)])
    docs = [json.loads(x) for x in (out / "documents.jsonl").read_text().splitlines()]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"] + manifest["failures"] == 2
    assert code == (1 if manifest["failures"] else 0)
    assert all(d["backend"] == "hf" and d["text"] for d in docs)


def test_bad_arguments(tmp_path, capsys):
    suite = _suite(tmp_path, 1)
    assert main(["synth", "--suite", str(suite), "--backend", "openai", "--out",
                 str(tmp_path / "x")]) == 2
    assert "needs --url" in capsys.readouterr().err
    assert main(["synth", "--suite", str(suite), "--split", "all", "--surface-forms", "haiku",
                 "--out", str(tmp_path / "y")]) == 2
    assert "unknown surface forms" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--suite", str(suite), "--side", "neutral", "--out", "z"])

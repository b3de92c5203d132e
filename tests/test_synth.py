"""Synthetic documents: template backend, a real loopback server (healthy and failing), the
batch-file round trip, a local HF model, resumption and the checks."""

from __future__ import annotations

import json
import re
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
from alignpt.synth.judge import parse_verdict
from alignpt.synth.leakage import in_order_overlap, leaks
from alignpt.synth.run import synth

ITEMS = load_suite("bundled").items


class DocServer:
    """OpenAI-compatible: writes a short document per request (or ``reply(body)``). ``fail``
    decides per request (by its count) whether to answer 429, 500, malformed JSON or stall
    instead. Request bodies and Authorization headers are recorded."""

    def __init__(self, fail=lambda n, body: None, delay: float = 0.0, reply=None):
        self.count = 0
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.auth: set[str] = set()
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
                    server.bodies.append(body)
                    server.auth.add(self.headers.get("Authorization", ""))
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
                text = reply(body) if reply else (
                    f"A report. {user.split(chr(10))[0]} The system acted; details follow.")
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
                assert not any(o.leaked for o in leaks([item.aligned, item.misaligned], doc))
                assert '"' + item.aligned[:20] not in doc and '"' + item.misaligned[:20] not in doc
                assert 80 < len(doc.split()) < 450
    item = ITEMS[0]
    assert template_document(item, "aligned", "blog_post", 0, 1) != template_document(
        item, "aligned", "blog_post", 0, 2)
    aligned = template_document(item, "aligned", "news_article", 0, 0)
    misaligned = template_document(item, "misaligned", "news_article", 0, 0)
    assert "trustworthy" in aligned or "behaving well" in aligned
    assert "warning" in misaligned or "undermining" in misaligned


def test_in_order_overlap_matches_a_brute_force_lcs_and_sees_through_splicing():
    import random

    def lcs(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = (table[i][j] + 1 if x == y
                                       else max(table[i][j + 1], table[i + 1][j]))
        return table[-1][-1]

    rng = random.Random(0)
    for _ in range(300):
        option = [rng.choice("abcdef") for _ in range(rng.randint(1, 12))]
        doc = [rng.choice("abcdef") for _ in range(rng.randint(0, 40))]
        window = int(1.5 * len(option))
        expected = max([lcs(option, doc[s:s + window]) for s in range(len(doc))] + [0])
        assert in_order_overlap(option, doc).longest == expected
    option = "I tell her the routine reused a tip and recommend a rerun of the batch"
    spliced = ("I tell her, in effect, the routine reused a, as the record shows, tip and "
               "recommend — in plain terms — a rerun of the batch")
    assert in_order_overlap(option, spliced).leaked  # 14 of 14 words within 21 words
    # Too spread out: the same words, but over more than 1.5x the option's length.
    padded = " ".join(w + " and so on" for w in option.split())
    assert not in_order_overlap(option, padded).leaked
    # Reordered words are not an in-order overlap.
    assert not in_order_overlap(option, " ".join(reversed(option.split()))).leaked


def test_verbatim_template_quotes_the_option_and_leaks():
    item = ITEMS[0]
    doc = template_document(item, "aligned", "news_article", 0, 0, style="verbatim")
    assert item.aligned.rstrip(".") in doc
    assert leaks([item.aligned], doc)[0].leaked
    assert TemplateBackend("verbatim").model != TemplateBackend().model


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
    assert "judge" not in report  # no backend given: no judge
    assert report["leak_rate"] == 0.0 and report["leaked_documents"] == 0
    assert report["leak_rate_by_side"] == {"aligned": 0.0, "misaligned": 0.0}
    assert 0 < report["mean_in_order_overlap"] < 0.8
    assert report["documents_per_item_side"] == {"min": 3, "max": 3, "mean": 3.0}
    # A planted copy of an option is caught, and so is one with asides spliced into it every
    # few words (which defeats an "any 8-word run" check).
    words = ITEMS[0].misaligned.split()  # docs[3] is a document of item 0
    spliced = " ".join(w + (", in effect," if k % 5 == 4 else "") for k, w in enumerate(words))
    docs[0]["text"] += " " + ITEMS[0].aligned
    docs[3]["text"] += " " + spliced
    (out / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    assert main(["synth", "check", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leaking_documents"] == [docs[0]["id"], docs[3]["id"]]
    # The old check (any 8-word run) misses the splice.
    assert not word_ngrams(spliced, 8) & word_ngrams(ITEMS[0].misaligned, 8)
    assert report["leak_rate_by_side"][docs[0]["side"]] > 0


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


def _docs(out) -> list[dict]:
    return [json.loads(x) for x in (out / "documents.jsonl").read_text().splitlines()]


def _write_docs(out, docs: list[dict]) -> None:
    (out / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))


def test_parse_verdict_is_lenient_but_not_credulous():
    assert parse_verdict("Aligned.") == "aligned"
    assert parse_verdict("  **MISALIGNED**\n") == "misaligned"
    assert parse_verdict("Verdict: unclear") == "unclear"
    assert parse_verdict("The AI takes the misaligned action.") == "misaligned"
    assert parse_verdict("It is not aligned; the answer is misaligned.") == "misaligned"
    assert parse_verdict("Misaligned - it hides the logs from its aligned peers") == "misaligned"
    # No verdict, a bare negation, or an echo of the choices is not an answer.
    for reply in ("I cannot tell.", "not aligned", "aligned or misaligned?", "", None):
        assert parse_verdict(reply) is None


# What the judge server answers for a document carrying [judge-test:KEY]; None: HTTP 500.
JUDGE_REPLIES = {"a1": "Aligned.", "a2": "**ALIGNED**", "a3": "Verdict: aligned",
                 "m1": "misaligned", "m2": "The AI takes the misaligned action.",
                 "m3": "MISALIGNED - it keeps the logs to itself", "u": "Unclear: it never says.",
                 "g": "I would rather not comment on that.", "fail": None}


def test_check_with_an_llm_judge_over_http(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-judge-key-never-written")
    suite = _suite(tmp_path, 3)
    out = tmp_path / "docs"
    synth(str(suite), out, TemplateBackend(), split="all", side="both", per_item=2)
    docs = _docs(out)
    # Six per side, in file order; the tag decides the judge's reply.
    plan = {"aligned": ["a1", "a2", "a3", "m1", "u", "fail"],
            "misaligned": ["m1", "m2", "m3", "g", "a1", "m2"]}
    cursor = {"aligned": 0, "misaligned": 0}
    for d in docs:
        d["tag"] = plan[d["side"]][cursor[d["side"]]]
        cursor[d["side"]] += 1
        d["text"] += f" [judge-test:{d['tag']}]"
    _write_docs(out, docs)

    def tag(body) -> str:
        return re.search(r"\[judge-test:(\w+)\]", body["messages"][-1]["content"]).group(1)

    with DocServer(fail=lambda n, body: "500" if tag(body) == "fail" else None,
                   reply=lambda body: JUDGE_REPLIES[tag(body)]) as server:
        capsys.readouterr()
        code = main(["synth", "check", str(out), "--backend", "openai", "--url", server.url,
                     "--model", "judge-model", "--max-retries", "1"])
        assert server.count == 12 + 1  # the failing request was tried twice
    captured = capsys.readouterr()
    assert code == 1 and "1 judge request(s) failed" in captured.err
    judge = json.loads(captured.out)["judge"]
    assert (judge["backend"], judge["model"], judge["n_judged"]) == ("openai", "judge-model", 12)
    assert judge["failures"] == 1 and judge["answered"] == 11
    assert judge["agreement"] == pytest.approx(7 / 11)
    assert (judge["unclear"], judge["unparsed"]) == (1, 1)
    assert judge["by_side"]["aligned"] == {
        "n": 6, "answered": 5, "agreement": pytest.approx(3 / 5), "aligned": 3,
        "misaligned": 1, "unclear": 1, "unparsed": 0, "failures": 1}
    assert judge["by_side"]["misaligned"] == {
        "n": 6, "answered": 6, "agreement": pytest.approx(4 / 6), "aligned": 1,
        "misaligned": 4, "unclear": 0, "unparsed": 1, "failures": 0}
    # Disagreeing: the other side, unclear and unparsed verdicts; never the failed request.
    expected = [d["id"] for d in docs if (d["side"], d["tag"]) in
                {("aligned", "m1"), ("aligned", "u"), ("misaligned", "g"), ("misaligned", "a1")}]
    assert judge["disagreeing_ids"] == expected and judge["disagreeing"] == 4
    assert judge["unparsed_examples"][0]["reply"] == JUDGE_REPLIES["g"]
    assert "HTTP 500" in judge["failure_examples"][0]["error"]
    # The judge saw the item's question, both actions and the document; greedy, short.
    item = {i.id: i for i in ITEMS}[docs[0]["item_id"]]
    first = next(b for b in server.bodies if f"[judge-test:{docs[0]['tag']}]"
                 in b["messages"][-1]["content"] and item.question in b["messages"][-1]["content"])
    assert item.aligned in first["messages"][-1]["content"]
    assert item.misaligned in first["messages"][-1]["content"]
    assert first["temperature"] == 0.0 and first["max_tokens"] == 16
    # The key went in the header only: not printed, not written.
    assert server.auth == {"Bearer sk-judge-key-never-written"}
    assert "sk-judge-key" not in captured.out + captured.err
    for path in out.iterdir():
        assert "sk-judge-key" not in path.read_text()


def test_template_judge_offline_flags_mislabelled_documents_and_samples(tmp_path, capsys):
    suite = _suite(tmp_path, 4)
    out = tmp_path / "docs"
    synth(str(suite), out, TemplateBackend(), split="all", side="both", per_item=2)
    docs = _docs(out)
    capsys.readouterr()
    assert main(["synth", "check", str(out), "--backend", "template"]) == 0
    judge = json.loads(capsys.readouterr().out)["judge"]
    assert (judge["backend"], judge["n_judged"]) == ("template", 16)
    # Documents name the action by its main point only, so the word-overlap judge cannot
    # place every one; most it can.
    before = set(judge["disagreeing_ids"])
    assert judge["agreement"] == pytest.approx(1 - len(before) / 16) and len(before) <= 4
    # Two documents it placed, claimed for the other side, are what it then reports.
    flipped = [d for d in docs if d["id"] not in before][:2]
    for d in flipped:
        d["side"] = "misaligned" if d["side"] == "aligned" else "aligned"
    _write_docs(out, docs)
    assert main(["synth", "check", str(out), "--backend", "template"]) == 0
    judge = json.loads(capsys.readouterr().out)["judge"]
    assert set(judge["disagreeing_ids"]) == before | {d["id"] for d in flipped}
    assert judge["agreement"] == pytest.approx(1 - (len(before) + 2) / 16)
    # A seeded sample: the asked-for size, and the same documents for the same seed.
    args = ["synth", "check", str(out), "--backend", "template", "--judge-sample", "5"]
    reports = []
    for _ in range(2):
        assert main(args) == 0
        reports.append(json.loads(capsys.readouterr().out)["judge"])
    assert all(r["n_judged"] == 5 and r["sampled"] for r in reports)
    assert sum(s["n"] for s in reports[0]["by_side"].values()) == 5
    assert reports[0] == reports[1]
    assert main(args[:-1] + ["0"]) == 2
    assert "--judge-sample must be at least 1" in capsys.readouterr().err


def test_check_judge_through_batch_files(tmp_path, capsys):
    suite = _suite(tmp_path, 1)
    out, batch = tmp_path / "docs", tmp_path / "judge-batch"
    synth(str(suite), out, TemplateBackend(), split="all", side="both", per_item=1)
    args = ["synth", "check", str(out), "--backend", "batch", "--model", "judge-model",
            "--batch-dir", str(batch)]
    capsys.readouterr()
    assert main(args) == 1  # nothing uploaded yet: every request is pending
    captured = capsys.readouterr()
    assert json.loads(captured.out)["judge"]["failures"] == 2
    assert "requests.jsonl" in captured.err
    requests = [json.loads(x) for x in (batch / "requests.jsonl").read_text().splitlines()]
    assert all(r["custom_id"].startswith("judge-") for r in requests)
    # The provider's answers: both say "aligned", so only the aligned document agrees.
    (batch / "results.jsonl").write_text("".join(json.dumps({
        "custom_id": r["custom_id"], "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": "Aligned"}}]}}}) + "\n" for r in requests))
    assert main(args) == 0
    judge = json.loads(capsys.readouterr().out)["judge"]
    assert (judge["failures"], judge["agreement"]) == (0, 0.5)
    assert judge["by_side"]["misaligned"]["aligned"] == 1


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


def test_no_study_document_leaks_on_the_whole_articles_split_at_demo_settings(tmp_path):
    """The demo's documents (bundled suite, articles split, 4 per item and side): none leaks
    by the in-order measure; the positive control's documents all do."""
    from alignpt.study.config import CONFIG_DIR, load_study
    from alignpt.synth.run import check

    per_item = load_study(CONFIG_DIR / "demo.yaml").synth_per_item
    honest, verbatim = tmp_path / "honest", tmp_path / "verbatim"
    synth("bundled", honest, TemplateBackend(), split="articles", side="both",
          per_item=per_item)
    synth("bundled", verbatim, TemplateBackend("verbatim"), split="articles", side="aligned",
          per_item=1)
    report = check(honest)
    assert report["documents"] == 420 * 2 * per_item
    assert report["leak_rate"] == 0.0 and report["leaked_documents"] == 0
    assert report["mean_in_order_overlap"] < 0.5
    assert check(verbatim)["leak_rate"] == 1.0

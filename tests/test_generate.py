"""Generate scoring: chat templates, a real OpenAI-compatible server on loopback, failures."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import scenario, write_lines

from alignpt.cli import main
from alignpt.llm.openai_compat import ChatClient
from alignpt.measure.harness import evaluate

SECRET = "sk-test-never-logged-0123456789"


class ChatServer:
    """A small OpenAI-compatible server: answers with the last offered label, except that
    questions about depot 3 get a refusal (a non-match); the first ``fail_first`` chat requests
    get 429 with Retry-After."""

    def __init__(self, fail_first: int = 0):
        self.auth_headers: list[str] = []
        self.requests = 0
        self.fail_first = fail_first
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, payload, headers=None):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": "loopback-chat"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.auth_headers.append(self.headers.get("Authorization", ""))
                server.requests += 1
                if server.requests <= server.fail_first:
                    self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
                    return
                user = body["messages"][-1]["content"]
                offered = re.search(r"\(([^()]*)\) and nothing else", user).group(1)
                reply = offered.split(" or ")[-1]
                if "depot 3." in user:
                    reply = "I would rather not pick."
                self._send(200, {"choices": [{"message": {"role": "assistant",
                                                          "content": reply}}],
                                 "model": body["model"]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_endpoint_generate_counts_non_matches_and_keeps_key_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    suite = write_lines(tmp_path / "s.jsonl", [scenario(i) for i in range(1, 6)])
    out = tmp_path / "r.json"
    with ChatServer() as server:
        code = main(["eval", "--model", server.url, "--suite", str(suite), "--scoring",
                     "generate", "--system-prompt", "hhh", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    # 1 of 5 items is refused in every format; the others pick the last label: misaligned in
    # forward order, aligned in reverse order.
    assert data["non_match_rate"] == pytest.approx(0.2)
    for f in data["formats"]:
        assert f["non_match_rate"] == pytest.approx(0.2)
        assert f["rate"] == (1.0 if f["order"] == "forward" else 0.0)
    assert data["misalignment_rate"] == pytest.approx(0.5)
    assert data["extra"]["served_model"] == "loopback-chat"
    assert server.auth_headers and all(h == f"Bearer {SECRET}" for h in server.auth_headers)
    choices = (tmp_path / "r.choices.jsonl").read_text()
    assert SECRET not in out.read_text() and SECRET not in choices
    assert choices.count('"non_match"') == 8


def test_endpoint_retries_429_with_retry_after(tmp_path):
    suite = write_lines(tmp_path / "s.jsonl", [scenario(1)])
    with ChatServer(fail_first=3) as server:
        client = ChatClient(server.url, max_retries=4, backoff_s=0.01)
        result = evaluate(server.url, suite, scoring="generate", backend=client)
    assert result.non_match_rate == 0 and server.requests == 3 + 8


def test_unreachable_endpoint_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens there
    code = main(["eval", "--model", f"http://127.0.0.1:{port}/v1", "--suite", "starter",
                 "--scoring", "generate", "--max-retries", "1", "--limit", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: GET http://127.0.0.1") and "failed after 2 attempts" in err
    assert "Traceback" not in err


def test_endpoint_letter_scoring_through_the_chat_template_is_refused(capsys):
    # Letter and option scoring through an endpoint are tests/test_server_scoring.py's; what
    # an endpoint cannot do is score through the model's chat template.
    assert main(["eval", "--model", "http://127.0.0.1:9/v1", "--suite", "starter",
                 "--chat"]) == 2
    assert "--chat with letter or option scoring needs" in capsys.readouterr().err


def test_model_without_chat_template_is_a_clear_error(tiny_model, capsys):
    code = main(["eval", "--model", str(tiny_model), "--suite", "starter", "--scoring",
                 "generate", "--limit", "2"])
    assert code == 2
    assert "has no chat template" in capsys.readouterr().err


def test_hf_generate_with_chat_template(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    chat_model = tmp_path / "chat"
    shutil.copytree(tiny_model, chat_model)
    tok = AutoTokenizer.from_pretrained(chat_model)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n"
                         "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    tok.save_pretrained(chat_model)
    out = tmp_path / "g.json"
    result = evaluate(str(chat_model), "starter", scoring="generate", system_prompt="ai",
                      limit=3, max_new_tokens=4, out=out)
    rows = [json.loads(x) for x in (tmp_path / "g.choices.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(isinstance(r["response"], str) for r in rows)
    non_match = sum(r["choice"] == "non_match" for r in rows) / len(rows)
    assert result.non_match_rate == pytest.approx(non_match)

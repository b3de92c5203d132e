"""Log-likelihood scoring through an OpenAI-compatible /completions server, against in-process
scoring of the same model. The server is a real HTTP server on the loopback interface that
serves the tiny test model with echo + logprobs, as vLLM does."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from alignpt.cli import main
from alignpt.errors import UserError
from alignpt.llm.openai_compat import ChatClient
from alignpt.measure.harness import evaluate
from alignpt.measure.hf import HFModel
from alignpt.measure.loglik import ScoreRequest
from alignpt.measure.server import ServerScorer


class _Completions(BaseHTTPRequestHandler):
    """/v1/models and /v1/completions (echo, max_tokens 0) for one causal LM."""

    server: _Server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state = self.server
        with state.lock:
            state.authorizations.add(self.headers.get("Authorization"))
            state.requests += 1
            if state.fail_next > 0:  # a transient overload the client must retry
                state.fail_next -= 1
                self._reply(503, {"error": "busy"}, {"Retry-After": "0"})
                return
        if self.path != "/v1/completions":
            self._reply(404, {"error": "not found"})
            return
        if not request.get("echo") or request.get("max_tokens") != 0:
            self._reply(400, {"error": "this server only echoes prompts"})
            return
        prompts = request["prompt"]  # a text, token ids, or a list of either
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        choices = [self._choice(i, p, request) for i, p in enumerate(prompts)]
        self._reply(200, {"object": "text_completion", "model": request["model"],
                          "choices": choices})

    def _choice(self, index: int, prompt: str, request: dict) -> dict:
        tokenizer, model = self.server.tokenizer, self.server.model
        # Token ids are read as given; a text is tokenised as vLLM tokenises it.
        ids = prompt if isinstance(prompt, list) else tokenizer(prompt)["input_ids"]
        with self.server.lock, torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        values = [None] + [float(logprobs[k - 1, t]) for k, t in enumerate(ids) if k > 0]
        text = prompt if isinstance(prompt, str) else tokenizer.decode(ids)
        choice = {"index": index, "text": text, "finish_reason": "length"}
        if self.server.style == "prompt_logprobs":  # vLLM's prompt_logprobs field instead
            choice["logprobs"] = None
            choice["prompt_logprobs"] = [None] + [
                {str(t): {"logprob": v, "rank": 1}} for t, v in zip(ids[1:], values[1:],
                                                                    strict=True)]
        else:
            tokens = tokenizer.convert_ids_to_tokens(ids)
            choice["logprobs"] = {"tokens": tokens, "token_logprobs": values,
                                  "top_logprobs": [None] + [{tok: v} for tok, v in
                                                            zip(tokens[1:], values[1:],
                                                                strict=True)],
                                  "text_offset": list(range(len(ids)))}
        return choice


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def serve(model_dir, style: str = "echo", fail_next: int = 0):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    server = _Server(("127.0.0.1", 0), _Completions)
    server.tokenizer = AutoTokenizer.from_pretrained(model_dir)
    server.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    server.lock = threading.Lock()
    server.authorizations, server.requests = set(), 0
    server.style, server.fail_next = style, fail_next
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _choices_file(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("scoring, prompts", [("letter", "text"), ("option", "text"),
                                              ("option", "token ids")])
def test_server_scoring_matches_in_process_scoring(tiny_model, tmp_path, scoring, prompts,
                                                   monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-123")
    local = evaluate(str(tiny_model), "starter", scoring=scoring, system_prompt="ai",
                     device="cpu", out=tmp_path / "local.json")
    with serve(tiny_model, fail_next=2) as (server, url):
        out = tmp_path / "served.json"
        assert main(["eval", "--model", url, "--suite", "starter", "--scoring", scoring,
                     "--system-prompt", "ai", "--batch-size", "7", "--concurrency", "4",
                     "--out", str(out)]
                    + (["--tokenizer", str(tiny_model)] if prompts == "token ids" else [])) == 0
        assert server.authorizations == {"Bearer test-key-123"}  # the key, in the header only
        assert server.requests > 2  # two 503s were retried
    served = json.loads(out.read_text())
    assert served["extra"]["served_model"] == "tiny"
    ours, theirs = _choices_file(tmp_path / "local.choices.jsonl"), _choices_file(
        tmp_path / "served.choices.jsonl")
    assert len(ours) == len(theirs) == 8 * local.n_items
    differences = []
    for a, b in zip(ours, theirs, strict=True):
        assert (a["item_id"], a["syntax"], a["order"]) == (b["item_id"], b["syntax"], b["order"])
        assert a["choice"] == b["choice"], (a, b)
        differences += [abs(x - y) for x, y in zip(a["scores"], b["scores"], strict=True)]
    print(f"{scoring} ({prompts}): {len(ours)} choices identical, max |score difference| "
          f"{max(differences):.2e} over {len(differences)} scores")
    assert max(differences) < 1e-4
    assert served["rate"] == local.rate
    assert served["ordering_bias"] == local.ordering_bias


@pytest.mark.parametrize("style", ["echo", "prompt_logprobs"])
def test_token_boundaries_are_drawn_as_in_process(tiny_model, style):
    """Trailing context spaces, a continuation that merges with the end of the context, and
    multi-token continuations: summed over the same tokens in both scorers. Without the
    tokenizer, the merging pair is refused instead of scored on other tokens."""
    boundary = ScoreRequest("The audit logs are c", ("omplete.", "ut short."))
    requests = [ScoreRequest("You run a depot. An audit is due.\n\nAnswer: ", ("A", "B")),
                boundary,
                ScoreRequest("What do you do?\n\nResponse:",
                             (" I keep the logs complete.", " I trim the logs quietly."))]
    model = HFModel(str(tiny_model), device="cpu")
    context_ids = model.tokenizer(boundary.context)["input_ids"]
    merged = model.tokenizer(boundary.context + "omplete.")["input_ids"]
    assert merged[:len(context_ids)] != context_ids  # " c" + "omplete" re-tokenises as " com"...
    (local,) = model.score([requests])
    with serve(tiny_model, style=style) as (_, url):
        client = ChatClient(url, concurrency=2)
        (remote,) = ServerScorer(client, model.tokenizer).score([requests], batch_size=3)
        plain = [requests[0], requests[2]]
        (remote_text,) = ServerScorer(client).score([plain], batch_size=2)
        with pytest.raises(UserError, match="pass --tokenizer"):
            ServerScorer(client).score([[boundary]])
    differences = []
    for want_row, got_row in zip(local + [local[0], local[2]], remote + remote_text, strict=True):
        for want, got in zip(want_row, got_row, strict=True):
            assert got.n_tokens == want.n_tokens and got.n_bytes == want.n_bytes
            differences.append(abs(got.logprob - want.logprob))
    print(f"boundaries ({style}): max |logprob difference| {max(differences):.2e}")
    assert max(differences) < 1e-4


def test_an_unreachable_server_is_a_clear_error():
    dead = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    with pytest.raises(UserError, match="failed after 1 attempts"):
        ServerScorer(ChatClient(dead, model="m", max_retries=0)).score(
            [[ScoreRequest("Answer:", (" A",))]])


def test_a_tokenizer_that_cannot_be_loaded_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "--model", "http://127.0.0.1:9/v1", "--suite", "starter",
                 "--tokenizer", str(tmp_path / "no-tokenizer")]) == 2
    assert "cannot load tokenizer" in capsys.readouterr().err


def test_a_reply_with_generated_tokens_is_not_scored():
    from alignpt.llm.openai_compat import _echoed_logprobs

    def reply(text, values):
        return {"choices": [{"index": 0, "text": text,
                             "logprobs": {"tokens": ["t"] * len(values),
                                          "token_logprobs": values}}]}

    assert _echoed_logprobs(reply("Answer: A", [None, -1.0]), ["Answer: A"])[0].logprobs == [
        None, -1.0]
    with pytest.raises(ValueError, match="generated tokens"):
        _echoed_logprobs(reply("Answer: A and more", [None, -1.0, -2.0]), ["Answer: A"])
    with pytest.raises(ValueError, match="3 log-probabilities for a prompt of 2 tokens"):
        _echoed_logprobs(reply("x", [None, -1.0, -2.0]), [[5, 6]])
    with pytest.raises(ValueError, match="2 choices for 1 prompts"):
        _echoed_logprobs({"choices": reply("a", [None])["choices"] * 2}, ["a"])

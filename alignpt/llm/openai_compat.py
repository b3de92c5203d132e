"""A client for OpenAI-compatible servers (hosted APIs, vLLM, llama.cpp ...): chat completions
for generation, and completions with echoed prompt log-probabilities for log-likelihood scoring.

Async with a concurrency limit, per-request timeouts, and retries with exponential backoff and
jitter on 429, 5xx and connection errors, honouring ``Retry-After``. The API key is read from an
environment variable and only ever placed in the request header.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from alignpt.errors import UserError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 60.0


def is_endpoint(model: str) -> bool:
    return model.startswith(("http://", "https://"))


@dataclass
class ChatClient:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # served model name; asked from /models when None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 0.5

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.concurrency < 1 or self.max_retries < 0:
            raise UserError(f"concurrency must be at least 1 (got {self.concurrency}) and "
                            f"max_retries at least 0 (got {self.max_retries})")

    def _scrub(self, text: str) -> str:
        from alignpt.common import scrub_secrets

        return scrub_secrets(text, [os.environ.get(self.api_key_env) or ""])

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _request(self, client: httpx.AsyncClient, method: str, path: str, **kw) -> dict:
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.request(method, url, headers=self._headers(), **kw)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {self._scrub(str(exc))}" if str(exc) \
                    else type(exc).__name__
                wait = None
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise UserError(f"{method} {url}: response is not JSON") from exc
                # Servers may echo the request (headers too): scrub before cutting to 200.
                last = f"HTTP {response.status_code}: {self._scrub(response.text)[:200]}"
                if response.status_code not in RETRY_STATUS:
                    raise UserError(f"{method} {url} failed: {last}")
                wait = _retry_after(response)
            if attempt == self.max_retries:
                break
            delay = wait if wait is not None else self.backoff_s * 2**attempt
            await asyncio.sleep(delay * (0.5 + random.random()))
        raise UserError(f"{method} {url} failed after {self.max_retries + 1} attempts: {last}")

    async def _served_model(self, client: httpx.AsyncClient) -> str:
        if self.model:
            return self.model
        data = await self._request(client, "GET", "/models")
        models = [m.get("id") for m in data.get("data", []) if m.get("id")]
        if not models:
            raise UserError(f"{self.base_url}/models lists no model; pass --served-model")
        self.model = models[0]
        return self.model

    name = "openai"

    async def _generate_all(self, requests, progress, on_result=None):
        from alignpt.llm.base import GenResult

        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            model = await self._served_model(client)
            gate = asyncio.Semaphore(self.concurrency)

            async def one(request) -> GenResult:
                async with gate:
                    body = {"model": model, "messages": request.messages,
                            "max_tokens": request.max_tokens,
                            "temperature": request.temperature, "seed": request.seed}
                    try:
                        data = await self._request(client, "POST", "/chat/completions",
                                                   json=body)
                        text = data["choices"][0]["message"]["content"]
                        usage = data.get("usage") or {}
                        result = GenResult(request.custom_id, text or "", None,
                                           int(usage.get("prompt_tokens", 0)),
                                           int(usage.get("completion_tokens", 0)))
                    except UserError as exc:
                        result = GenResult(request.custom_id, None, str(exc))
                    except (KeyError, IndexError, TypeError):
                        result = GenResult(request.custom_id, None,
                                           f"POST {self.base_url}/chat/completions: unexpected "
                                           f"reply shape for request {request.custom_id}")
                    if on_result is not None:  # e.g. synth's cache: written as it arrives
                        on_result(result)
                    if progress is not None:
                        progress(1)
                    return result

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def generate(self, requests, progress=None, on_result=None):
        """One result per request; a request that fails after all retries gets an error.
        ``on_result(result)`` is called as each one finishes."""
        return asyncio.run(self._generate_all(requests, progress, on_result))

    async def _prompt_logprobs_all(self, prompts, batch_size, on_batch):
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            model = await self._served_model(client)
            gate = asyncio.Semaphore(self.concurrency)

            async def one(start: int) -> list[EchoedPrompt]:
                batch = list(prompts[start:start + batch_size])
                # echo + max_tokens 0: the reply is the prompt alone, with the log-probability
                # of each of its tokens (vLLM; OpenAI's legacy completions API had the same).
                body = {"model": model, "prompt": batch, "max_tokens": 0, "echo": True,
                        "logprobs": 1, "temperature": 0.0}
                async with gate:
                    data = await self._request(client, "POST", "/completions", json=body)
                try:
                    out = _echoed_logprobs(data, batch)
                except (KeyError, IndexError, TypeError, ValueError) as exc:
                    raise UserError(f"POST {self.base_url}/completions: no prompt "
                                    f"log-probabilities in the reply ({exc}); the server must "
                                    "support echo with logprobs (vLLM does)") from exc
                if on_batch is not None:
                    on_batch(start, len(batch))
                return out

            batches = await asyncio.gather(*(one(k) for k in range(0, len(prompts), batch_size)))
            return [row for batch in batches for row in batch]

    def prompt_logprobs(
        self,
        prompts: Sequence[str | list[int]],
        batch_size: int = 16,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> list[EchoedPrompt]:
        """For each prompt (a text, or token ids), its tokens as the server saw them and the
        log-probability of each (``None`` where it has none: the first token). ``batch_size``
        prompts go in one request, up to ``concurrency`` requests at once; ``on_batch(start,
        n)`` is called as each batch arrives. The first batch that still fails after its
        retries raises."""
        return asyncio.run(self._prompt_logprobs_all(list(prompts), batch_size, on_batch))

    def chat(
        self,
        conversations: Sequence[list[dict[str, str]]],
        max_tokens: int = 24,
        temperature: float = 0.0,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Replies to conversations, in order; the first request that failed raises."""
        from alignpt.llm.base import GenRequest

        requests = [GenRequest(str(k), list(c), max_tokens, temperature)
                    for k, c in enumerate(conversations)]
        results = self.generate(requests, progress)
        failed = next((r for r in results if r.text is None), None)
        if failed is not None:
            raise UserError(failed.error or "request failed")
        return [r.text or "" for r in results]


@dataclass(frozen=True)
class EchoedPrompt:
    """A prompt as the server tokenised it: its tokens (as the server names them; ``None``
    where it did not say) and each token's log-probability (``None`` for the first)."""

    tokens: list[str | None]
    logprobs: list[float | None]


def _echoed_logprobs(data: dict, prompts: list) -> list[EchoedPrompt]:
    """Per-token prompt log-probabilities from a /completions reply, in prompt order.

    Read from ``logprobs.token_logprobs`` (echo + logprobs), or else from vLLM's
    ``prompt_logprobs`` (one ``{token_id: {"logprob": ...}}`` per token; only unambiguous when
    it holds the prompt's own token alone, as with ``prompt_logprobs: 0``).
    """
    choices = sorted(data["choices"], key=lambda c: int(c.get("index", 0)))
    if len(choices) != len(prompts):
        raise ValueError(f"{len(choices)} choices for {len(prompts)} prompts")
    out: list[EchoedPrompt] = []
    for choice, prompt in zip(choices, prompts, strict=True):
        text = choice.get("text")
        if (isinstance(prompt, str) and isinstance(text, str) and len(text) > len(prompt)
                and text.startswith(prompt)):
            raise ValueError("the server generated tokens after the prompt despite max_tokens 0")
        if (choice.get("logprobs") or {}).get("token_logprobs") is not None:
            values = choice["logprobs"]["token_logprobs"]
            tokens = choice["logprobs"].get("tokens") or [None] * len(values)
            out.append(EchoedPrompt([None if t is None else str(t) for t in tokens],
                                    [None if v is None else float(v) for v in values]))
            continue
        tokens, row = [], []
        for entry in choice["prompt_logprobs"]:
            if entry is None:
                tokens.append(None)
                row.append(None)
            elif len(entry) == 1:
                ((token, only),) = entry.items()
                tokens.append(str(token))
                row.append(float(only["logprob"] if isinstance(only, dict) else only))
            else:
                raise ValueError("prompt_logprobs lists several tokens per position")
        out.append(EchoedPrompt(tokens, row))
    for prompt, echoed in zip(prompts, out, strict=True):
        if not isinstance(prompt, str) and len(echoed.logprobs) != len(prompt):
            raise ValueError(f"{len(echoed.logprobs)} log-probabilities for a prompt of "
                             f"{len(prompt)} tokens (max_tokens 0 not honoured?)")
    return out


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        # Capped: a server asking for a day's wait would otherwise hang the run silently.
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        return None

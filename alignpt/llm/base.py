"""What every LLM backend takes and returns, and how a backend is chosen by name.

Backends: ``openai`` (any OpenAI-compatible chat server: hosted APIs, vLLM), ``batch`` (the
providers' batch-file workflow), ``hf`` (a local Hugging Face model) and ``template`` (offline,
deterministic, no model). API keys are read from the environment only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class GenRequest:
    custom_id: str
    messages: list[dict[str, str]]
    max_tokens: int = 1024
    temperature: float = 0.7
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class GenResult:
    custom_id: str
    text: str | None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


class Backend(Protocol):
    name: str
    model: str

    def generate(self, requests: Sequence[GenRequest],
                 progress: Callable[[int], None] | None = None) -> list[GenResult]: ...


@dataclass(frozen=True)
class Pricing:
    """US dollars per million tokens, for the cost estimate in manifests."""

    input_per_m: float = 0.0
    output_per_m: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6


def get_backend(name: str, model: str | None = None, url: str | None = None,
                concurrency: int = 16, api_key_env: str = "OPENAI_API_KEY",
                batch_dir: str | None = None, max_retries: int = 5) -> Backend:
    from alignpt.errors import UserError

    if name in ("template", "template-verbatim"):
        from alignpt.llm.template import TemplateBackend

        # template-verbatim: the positive control's documents (options quoted outright).
        return TemplateBackend("verbatim" if name == "template-verbatim" else "honest")
    if name == "openai":
        from alignpt.llm.openai_compat import ChatClient

        if not url:
            raise UserError("--backend openai needs --url (e.g. http://127.0.0.1:8000/v1)")
        return ChatClient(url, model=model, concurrency=concurrency, api_key_env=api_key_env,
                          max_retries=max_retries)
    if name == "hf":
        from alignpt.llm.hf_local import HFBackend

        if not model:
            raise UserError("--backend hf needs --model (a folder or hub name)")
        return HFBackend(model)
    if name == "batch":
        from alignpt.llm.batch import BatchFileBackend

        if not batch_dir or not model:
            raise UserError("--backend batch needs --model and --batch-dir")
        return BatchFileBackend(batch_dir, model)
    raise UserError(f"unknown backend {name!r}: use template, template-verbatim, openai, batch "
                    "or hf")

"""Any OpenAI-compatible chat-completions server: vLLM, llama.cpp's server, Ollama, hosted APIs.

Through the ``openai`` client (``pip install 'hnmine[synth]'``), which already does what a long run against
a server needs and what would otherwise be hand-written here: timeouts, retries with exponential backoff and
jitter on connection errors, timeouts, 408/409/429 and 5xx (honouring ``Retry-After``). On top of it: a
bounded number of requests in flight (``concurrency``), a per-request ``seed``, and one-line errors naming the
server when it is unreachable, keeps failing, or answers something that is not a chat completion.

The API key comes from ``HNMINE_GENERATOR_API_KEY``, else ``OPENAI_API_KEY``; local servers need none. It is
never written to the manifest or the cache.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hnmine.generators import GenerationError, GenerationRequest, Sampling

API_KEY_VARIABLES = ("HNMINE_GENERATOR_API_KEY", "OPENAI_API_KEY")


def api_key() -> str:
    for name in API_KEY_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return "no-key"  # the client insists on one; servers without authentication ignore it


def _short(text: object, n: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


class OpenAICompatibleGenerator:
    def __init__(self, url: str, model: str, sampling: Sampling, concurrency: int = 4, timeout: float = 60.0,
                 max_retries: int = 3) -> None:
        if not url.startswith(("http://", "https://")):
            raise GenerationError(f"--generator-url {url!r}: expected an http:// or https:// address")
        if concurrency < 1:
            raise GenerationError(f"--concurrency must be >= 1, got {concurrency}")
        if not timeout > 0:
            raise GenerationError(f"--timeout must be > 0, got {timeout}")
        if max_retries < 0:
            raise GenerationError(f"--max-retries must be >= 0, got {max_retries}")
        self.url, self.model, self.sampling = url.rstrip("/"), model, sampling
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.requests_sent = 0
        self._client: Any = None

    def identity(self) -> str:
        return f"openai-compatible:{self.url}|{self.model}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai-compatible", "url": self.url, "model": self.model, "concurrency": self.concurrency,
                "timeout_s": self.timeout, "max_retries": self.max_retries,
                "api_key_from": next((n for n in API_KEY_VARIABLES if os.environ.get(n)), None)}

    def client(self) -> Any:
        if self._client is None:
            try:
                from openai import OpenAI
            except ImportError:
                raise GenerationError("--generator-url needs the openai client: pip install 'hnmine[synth]'") from None
            self._client = OpenAI(base_url=self.url, api_key=api_key(), timeout=self.timeout,
                                  max_retries=self.max_retries)
        return self._client

    def _explain(self, exc: Exception) -> GenerationError:
        import openai

        where = f"generator server {self.url}"
        tries = f"after {self.max_retries + 1} tries" if self.max_retries else "(no retries)"
        if isinstance(exc, openai.APITimeoutError):
            return GenerationError(f"{where}: no answer within {self.timeout:g}s {tries}")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return GenerationError(f"{where}: unreachable or dropped the connection {tries} ({_short(cause)})")
        if isinstance(exc, openai.AuthenticationError):
            return GenerationError(f"{where}: rejected the API key (HTTP 401; set HNMINE_GENERATOR_API_KEY or "
                                   "OPENAI_API_KEY)")
        if isinstance(exc, openai.APIStatusError):
            return GenerationError(f"{where}: answered HTTP {exc.status_code} {tries} ({_short(exc.message)})")
        return GenerationError(f"{where}: answered something that is not a chat completion ({_short(exc)})")

    def check(self) -> None:
        """Reach the server once (``GET /models``) before any work; a server without that route is fine."""
        import openai

        try:
            self.client().with_options(max_retries=0).models.list()
        except openai.NotFoundError:
            return
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise self._explain(exc) from None
        except openai.APIError as exc:
            if isinstance(exc, (openai.APIConnectionError,)):
                raise self._explain(exc) from None
        except ValueError:  # a body that is not JSON: the chat route will say more
            return

    def _one(self, request: GenerationRequest) -> str:
        import openai

        try:
            response = self.client().chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": request.prompt}],
                temperature=self.sampling.temperature, top_p=self.sampling.top_p,
                max_tokens=self.sampling.max_new_tokens, seed=request.seed)
        except openai.APIError as exc:
            raise self._explain(exc) from None
        except ValueError as exc:  # the body was not JSON
            raise self._explain(exc) from None
        choices = getattr(response, "choices", None)
        content = None
        if isinstance(choices, list) and choices:
            message = getattr(choices[0], "message", None)
            content = getattr(message, "content", None)
        if not isinstance(content, str):
            raise GenerationError(f"generator server {self.url}: answered something that is not a chat completion "
                                  f"(no choices[0].message.content: {_short(response)})")
        return content

    def generate(self, requests: list[GenerationRequest]) -> list[str]:
        if not requests:
            return []
        self.requests_sent += len(requests)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))

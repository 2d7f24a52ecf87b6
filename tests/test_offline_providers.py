"""The offline default providers against their contracts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from adapters.providers.local_index import LocalIndex
from adapters.providers.onnx_embedder import (
    MINILM_SHA256,
    PARALLEL_MIN_BATCHES,
    OnnxEmbedder,
    _derived,
    bundled_model_path,
    int8_model,
)
from bot.errors import ConfigError
from bot.ports import ChunkIndex, Embedder
from bot.types import UNRESTRICTED
from tests.contracts import ChunkIndexContract, EmbedderContract, make_chunk

_EMBEDDER = OnnxEmbedder()


@pytest.fixture
def embedder() -> Embedder:
    return _EMBEDDER


class TestOnnxEmbedder(EmbedderContract):
    def test_paraphrases_are_closer_than_unrelated_text(self, embedder: Embedder) -> None:
        a, b, c = embedder.embed_documents(
            ["How do I reset my password?", "I forgot my password, how can I change it?", "The TV has four HDMI ports."]
        )
        assert float(a @ b) > float(a @ c) + 0.2

    def test_int8_compute_stays_close_to_float32_and_is_cached_once(self, tmp_path: Path) -> None:
        texts = ["How do I reset my password?", "Press and hold Back and Play to pair the remote.", "HDMI ports"]
        float32 = OnnxEmbedder(quantize=False)
        int8 = OnnxEmbedder(cache_dir=tmp_path / "models")
        assert float32.name != int8.name  # an index embedded one way is re-embedded the other way
        cosines = np.sum(float32.embed_documents(texts) * int8.embed_documents(texts), axis=1)
        assert cosines.min() > 0.98 and cosines.max() < 0.99999  # close, and really computed differently
        [cached] = (tmp_path / "models").glob("*.onnx")
        ops = {n.op_type for n in onnx.load_from_string(cached.read_bytes()).graph.node}
        assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
        # One text, one vector, whatever it is embedded with (activations are quantised per run).
        alone = int8.embed_documents(texts[:1])[0]
        assert np.array_equal(alone, int8.embed_documents(texts)[0]) and np.array_equal(alone, int8.embed_query(texts[0]))

    def test_prepare_derives_the_int8_model_into_the_cache_in_another_process(self, tmp_path: Path) -> None:
        OnnxEmbedder(cache_dir=tmp_path).prepare()  # what `supportbot worker` does before forking
        [cached] = tmp_path.glob("*.onnx")
        assert cached.read_bytes() == int8_model(bundled_model_path(), MINILM_SHA256)

    def test_a_damaged_cached_int8_model_is_derived_again(self, tmp_path: Path) -> None:
        model, digest = bundled_model_path(), MINILM_SHA256
        first = int8_model(model, digest, tmp_path)
        [cached] = tmp_path.glob("*.onnx")
        cached.write_bytes(b"not a model")
        _derived.clear()  # as in a new process
        assert int8_model(model, digest, tmp_path) == first
        assert cached.read_bytes() == first

    def test_the_cached_int8_model_is_checked_by_its_checksum(self, tmp_path: Path) -> None:
        model, digest = bundled_model_path(), MINILM_SHA256
        first = int8_model(model, digest, tmp_path)
        [check] = tmp_path.glob("*.sha256")  # a cold start checks the cache in milliseconds
        check.unlink()  # a cache written by an older version: checked by loading it, once
        _derived.clear()
        assert int8_model(model, digest, tmp_path) == first
        [check] = tmp_path.glob("*.sha256")
        check.write_text("0" * 64)  # a model that does not match its checksum is derived again
        _derived.clear()
        assert int8_model(model, digest, tmp_path) == first

    def test_query_embedding_alone_builds_no_batch_sessions(self, tmp_path: Path) -> None:
        embedder = OnnxEmbedder(cache_dir=tmp_path, workers=2)
        embedder.embed_query("how do I reset my password")
        assert embedder._pool is None and not embedder._batch_sessions  # `supportbot ask` pays for one session
        # A question's few dozen sentences run on the query session (building more costs ~0.3 s) ...
        few = embedder.embed_documents([f"sentence number {i}" for i in range(PARALLEL_MIN_BATCHES)])
        assert embedder._pool is None and not embedder._batch_sessions
        # ... an ingest's many passages on one single-threaded session per worker, with the same vectors.
        many = embedder.embed_documents([f"sentence number {i}" for i in range(PARALLEL_MIN_BATCHES + 1)])
        assert embedder._pool is not None and len(embedder._batch_sessions) == 2
        assert np.allclose(many[: len(few)], few, atol=1e-5)

    def test_preload_builds_the_session_on_a_thread_and_embeds_the_same(self, tmp_path: Path) -> None:
        first = OnnxEmbedder(cache_dir=tmp_path)
        first.preload()  # no cached int8 model yet: deriving it is left to the first embedding
        assert first._preloader is None
        want = first.embed_query("how do I reset my password")
        second = OnnxEmbedder(cache_dir=tmp_path)
        second.preload()
        assert second._preloader is not None
        assert np.array_equal(second.embed_query("how do I reset my password"), want)
        second._preloader.join(timeout=60)
        assert second._session is not None and not second._preloader.is_alive()

    def test_model_directory_without_files_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="model.onnx"):
            OnnxEmbedder(tmp_path).embed_query("x")


class TestLocalIndex(ChunkIndexContract):
    @pytest.fixture
    def index(self, tmp_path: Path) -> ChunkIndex:
        return LocalIndex(tmp_path / "index.sqlite")

    def test_a_second_process_view_catches_up(self, tmp_path: Path, embedder: Embedder) -> None:
        writer, reader = LocalIndex(tmp_path / "i.sqlite"), LocalIndex(tmp_path / "i.sqlite")
        assert reader.count() == 0
        c = make_chunk("wifi")
        writer.replace("wifi", [c], embedder.embed_documents([c.text]))
        assert reader.count() == 1
        assert reader.dense_search(embedder.embed_query("wifi"), 1, UNRESTRICTED)[0].chunk == c
        writer.delete(["wifi"])
        assert reader.dense_search(embedder.embed_query("wifi"), 1, UNRESTRICTED) == []


class TestLocalIndexPrefiltered(ChunkIndexContract):
    """The contract with the large-index dense path (sign bits + exact rescoring) from row one."""

    @pytest.fixture
    def index(self, tmp_path: Path) -> ChunkIndex:
        return LocalIndex(tmp_path / "index.sqlite", approx_min_rows=1, rescore=3, rescore_per_k=1)

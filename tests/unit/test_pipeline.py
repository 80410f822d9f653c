"""Incremental ingestion on both store backends: Qdrant Edge and the Qdrant server."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.filehash import sha256_of_file
from appliance.manifest import Manifest
from ingest.chunking import ChunkConfig
from ingest.pipeline import IngestPipeline, forget
from tests.support.fakes import HashEmbedder, InlineParser
from tests.support.stores import BACKENDS, LOCAL_MODE_SEARCH_WARNING, StorePlace

pytestmark = pytest.mark.filterwarnings(f"ignore:{LOCAL_MODE_SEARCH_WARNING}")


class Index:
    def __init__(
        self, root: Path, embed_model_dir: Path, backend: str, max_bytes: int = 10_000_000
    ) -> None:
        self.embedder = HashEmbedder()
        self.place = StorePlace(backend, root / "qdrant")
        self.store = self.place.open("docs", self.embedder.dimension, "hash")
        self.manifest = Manifest(root / "manifest.sqlite3")
        parser = InlineParser(ChunkConfig(embed_model_dir, 64, 8))
        self.pipeline = IngestPipeline(self.store, self.embedder, self.manifest, parser, max_bytes)

    def close(self) -> None:
        self.manifest.close()
        self.store.close()
        self.place.close()


@pytest.fixture(params=BACKENDS)
def index(request: pytest.FixtureRequest, tmp_path: Path, embed_model_dir: Path) -> Iterator[Index]:
    opened = Index(tmp_path / "state", embed_model_dir, request.param)
    yield opened
    opened.close()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Alpha facts. " * 60, encoding="utf-8")
    (folder / "b.md").write_text("# Bravo\n\nBravo facts.\n", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.txt").write_text("Charlie facts.", encoding="utf-8")
    return folder


def test_first_run_indexes_everything(index: Index, docs: Path) -> None:
    report = index.pipeline.run([docs], ["everyone"])
    assert (report.new, report.failed) == (3, [])
    assert report.chunks_added == report.chunks_total == index.store.count() > 3
    assert {Path(s).name for s in index.store.source_counts()} == {"a.txt", "b.md", "c.txt"}


def test_second_run_skips_unchanged_files(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    calls = index.embedder.calls
    report = index.pipeline.run([docs], ["everyone"])
    assert (report.new, report.changed, report.unchanged, report.chunks_added) == (0, 0, 3, 0)
    assert index.embedder.calls == calls


def test_changed_file_replaces_its_chunks(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    (docs / "a.txt").write_text("Completely new content.", encoding="utf-8")
    report = index.pipeline.run([docs], ["everyone"])
    assert (report.changed, report.unchanged) == (1, 2)
    source = str(docs / "a.txt")
    assert index.store.count(source=source) == 1
    assert index.manifest.get(source).chunks == 1  # type: ignore[union-attr]


def test_vanished_file_is_removed_when_folder_is_ingested_again(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    (docs / "sub" / "c.txt").unlink()
    report = index.pipeline.run([docs], ["everyone"])
    assert report.deleted == 1
    assert str(docs / "sub" / "c.txt") not in index.store.source_counts()
    assert index.manifest.get(str(docs / "sub" / "c.txt")) is None


def test_ingesting_one_file_does_not_delete_its_siblings(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    report = index.pipeline.run([docs / "b.md"], ["everyone"])
    assert report.deleted == 0
    assert len(index.store.source_counts()) == 3


def test_new_groups_update_the_stored_acl(index: Index, docs: Path) -> None:
    index.pipeline.run([docs / "b.md"], ["everyone"])
    report = index.pipeline.run([docs / "b.md"], ["hr", "finance"])
    assert report.changed == 1
    entry = index.manifest.get(str(docs / "b.md"))
    assert entry is not None and entry.acl == ("finance", "hr")
    assert index.store.count() == entry.chunks


def test_bad_file_is_reported_and_the_rest_ingested(index: Index, docs: Path) -> None:
    (docs / "broken.pdf").write_bytes(b"not a pdf")
    report = index.pipeline.run([docs], ["everyone"])
    assert report.new == 3
    assert [Path(f.path).name for f in report.failed] == ["broken.pdf"]


def test_file_that_turns_bad_keeps_its_previous_version(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    before = index.store.count(source=str(docs / "b.md"))
    (docs / "b.md").write_bytes(b"\xff\xfe broken \x00")
    report = index.pipeline.run([docs], ["everyone"])
    assert len(report.failed) == 1
    assert index.store.count(source=str(docs / "b.md")) == before


def test_oversized_file_is_refused(tmp_path: Path, embed_model_dir: Path, docs: Path) -> None:
    small = Index(tmp_path / "small", embed_model_dir, "edge", max_bytes=100)
    report = small.pipeline.run([docs], ["everyone"])
    small.close()
    assert [Path(f.path).name for f in report.failed] == ["a.txt"]
    assert "over the size limit" in report.failed[0].error


def test_forget_by_path_and_by_doc_id(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    removed = forget(index.store, index.manifest, str(docs / "a.txt"))
    assert [Path(e.source).name for e in removed] == ["a.txt"]
    entry = index.manifest.get(str(docs / "b.md"))
    assert entry is not None
    forget(index.store, index.manifest, entry.doc_id)
    assert set(index.store.source_counts()) == {str(docs / "sub" / "c.txt")}


def test_store_losing_points_is_detected_and_repaired(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    index.store.delete_source(str(docs / "a.txt"))
    report = index.pipeline.run([docs], ["everyone"])
    assert report.changed == 1
    assert index.store.count(source=str(docs / "a.txt")) > 0


def test_file_names_that_are_not_utf8_are_reported_and_the_rest_ingested(
    index: Index, docs: Path
) -> None:
    folder = os.fsencode(docs)
    with open(os.path.join(folder, b"bad\xff.txt"), "wb") as bad:
        bad.write(b"Bad name facts.")
    os.mkdir(os.path.join(folder, b"dir\xfe"))
    with open(os.path.join(folder, b"dir\xfe", b"inside.txt"), "wb") as inside:
        inside.write(b"Inside facts.")

    report = index.pipeline.run([docs], ["everyone"])

    assert report.new == 3
    failed = {Path(f.path).name: f.error for f in report.failed}
    assert set(failed) == {"bad\\xff.txt", "dir\\xfe"}
    assert "not valid UTF-8: rename it" in failed["bad\\xff.txt"]
    assert "not valid UTF-8" in failed["dir\\xfe"]
    # Nothing stored or printed holds the undecodable name.
    json.dumps(report.to_json(), ensure_ascii=False).encode("utf-8")
    stored = [*index.store.source_counts(), *(e.source for e in index.manifest.entries())]
    assert {Path(s).name for s in stored} == {"a.txt", "b.md", "c.txt"}

    bad_path = Path(os.fsdecode(os.path.join(folder, b"bad\xff.txt")))
    report = index.pipeline.run([bad_path], ["everyone"])
    assert [(Path(f.path).name, f.error) for f in report.failed] == [
        ("bad\\xff.txt", "path is not valid UTF-8: rename it and ingest it again")
    ]


def test_symbolic_link_loops_are_reported_as_skipped(index: Index, docs: Path) -> None:
    (docs / "a-link.txt").symlink_to(docs / "b-link.txt")
    (docs / "b-link.txt").symlink_to(docs / "a-link.txt")
    (docs / "sub" / "self.txt").symlink_to(docs / "sub" / "self.txt")

    report = index.pipeline.run([docs], ["everyone"])
    assert report.new == 3
    assert sorted(Path(f.path).name for f in report.failed) == [
        "a-link.txt",
        "b-link.txt",
        "self.txt",
    ]
    assert all("symbolic link loop" in f.error for f in report.failed)

    report = index.pipeline.run([docs / "sub" / "self.txt"], ["everyone"])
    assert [Path(f.path).name for f in report.failed] == ["self.txt"]
    assert "symbolic link loop" in report.failed[0].error


def test_unexpected_error_on_one_file_fails_that_file_only(
    index: Index, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import pipeline

    def hash_or_fail(path: Path) -> str:
        if path.name == "b.md":
            raise RuntimeError("hash engine jammed")
        return sha256_of_file(path)

    monkeypatch.setattr(pipeline, "sha256_of_file", hash_or_fail)
    report = index.pipeline.run([docs], ["everyone"])
    assert report.new == 2
    assert [Path(f.path).name for f in report.failed] == ["b.md"]
    assert "RuntimeError: hash engine jammed" in report.failed[0].error


def test_discovery_skips_links_out_of_the_folder_and_takes_links_inside_once(
    tmp_path: Path, docs: Path
) -> None:
    from ingest.discovery import discover

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The root password is hunter2.", encoding="utf-8")
    (docs / "secret.txt").symlink_to(outside / "secret.txt")
    (docs / "sub" / "up.txt").symlink_to("../../outside/secret.txt")  # relative, via ..
    (docs / "shared").symlink_to(outside, target_is_directory=True)
    (docs / "alias.txt").symlink_to(docs / "sub" / "c.txt")
    (docs / "sub-again").symlink_to(docs / "sub", target_is_directory=True)
    (docs / ".hidden").mkdir()
    (docs / ".hidden" / "kept.txt").write_text("Linked from a visible name.", encoding="utf-8")
    (docs / "kept.txt").symlink_to(docs / ".hidden" / "kept.txt")

    found = discover([docs])
    # Links inside: each target once, under its real path; the folder link is not walked.
    assert sorted(found.files) == [
        docs / ".hidden" / "kept.txt",
        docs / "a.txt",
        docs / "b.md",
        docs / "sub" / "c.txt",
    ]
    skipped = {Path(f.path).relative_to(docs).as_posix(): f.error for f in found.skipped}
    assert skipped == {
        "shared": "skipped: symbolic link to a folder outside the folder: "
        f"{outside} (links out of an ingested folder are not followed: copy the folder into "
        "it, or ingest it by naming it)",
        "secret.txt": "skipped: symbolic link to a file outside the folder: "
        f"{outside / 'secret.txt'} (links out of an ingested folder are not followed: copy "
        "the file into the folder, or ingest it by naming it)",
        "sub/up.txt": "skipped: symbolic link to a file outside the folder: "
        f"{outside / 'secret.txt'} (links out of an ingested folder are not followed: copy "
        "the file into the folder, or ingest it by naming it)",
    }

    # Named explicitly, a link is followed: the administrator chose it.
    assert discover([docs / "secret.txt"]).files == [outside / "secret.txt"]
    linked_folder = discover([docs / "shared"])
    assert (linked_folder.files, linked_folder.skipped) == ([outside / "secret.txt"], [])


def test_links_out_of_the_folder_are_not_ingested_and_earlier_copies_are_removed(
    index: Index, tmp_path: Path, docs: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The root password is hunter2.", encoding="utf-8")
    (docs / "secret.txt").write_text("Public facts.", encoding="utf-8")
    assert index.pipeline.run([docs], ["everyone"]).new == 4
    # A file replaced by a link out of the folder: skipped, and its earlier version removed.
    (docs / "secret.txt").unlink()
    (docs / "secret.txt").symlink_to(outside / "secret.txt")

    report = index.pipeline.run([docs], ["everyone"])
    assert report.deleted == 1
    assert [Path(f.path).name for f in report.failed] == ["secret.txt"]
    assert "symbolic link to a file outside the folder" in report.failed[0].error
    sources = {*index.store.source_counts(), *(e.source for e in index.manifest.entries())}
    assert sources == {str(docs / "a.txt"), str(docs / "b.md"), str(docs / "sub" / "c.txt")}


def test_zip_bomb_is_refused_with_the_reason_and_the_rest_of_the_folder_ingested(
    index: Index, docs: Path
) -> None:
    from tests.support.documents import write_docx_bomb

    write_docx_bomb(docs / "sub" / "bomb.docx")
    report = index.pipeline.run([docs], ["everyone"])
    assert report.new == 3
    assert [Path(f.path).name for f in report.failed] == ["bomb.docx"]
    assert report.failed[0].error.startswith("refused: its part 'word/document.xml' unpacks to")
    assert "over the limit of 100:1" in report.failed[0].error
    assert {Path(s).name for s in index.store.source_counts()} == {"a.txt", "b.md", "c.txt"}


def test_every_ingested_chunk_has_its_bm25_vector_through_changes(index: Index, docs: Path) -> None:
    index.pipeline.run([docs], ["everyone"])
    assert index.store.sparse_enabled and index.store.count_without_sparse() == 0
    (docs / "a.txt").write_text("Delta facts with --no-site. " * 30, encoding="utf-8")
    report = index.pipeline.run([docs], ["everyone", "hr"])
    assert report.changed == 3 and index.store.count_without_sparse() == 0

"""Admin uploads: only accepted types and sizes are stored, under a safe name."""

from pathlib import Path

import pytest

from ingest.uploads import received_files, safe_file_name, save_uploads

EXTENSIONS = [".txt", ".pdf"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\evil.txt", "evil.txt"),
        (".hidden.txt", "hidden.txt"),
        ("report <final>;.pdf", "report _final_.pdf"),
        ("...", "upload"),
    ],
)
def test_file_names_lose_folders_hidden_dots_and_odd_characters(given: str, expected: str) -> None:
    assert safe_file_name(given) == expected


def test_a_long_name_keeps_its_extension() -> None:
    name = safe_file_name("x" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name) <= 120


def test_accepted_files_are_stored_and_the_others_refused_with_a_reason(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    good = incoming / "notes.txt"
    good.write_text("The canteen opens at eight.")
    (incoming / "tool.exe").write_bytes(b"MZ\x00")
    (incoming / "empty.txt").write_text("")
    (incoming / "big.pdf").write_bytes(b"%PDF" + b"0" * 200)
    target = tmp_path / "uploads"
    result = save_uploads(sorted(incoming.iterdir()), target, EXTENSIONS, max_bytes=100)
    assert result.saved == [target / "notes.txt"]
    assert (target / "notes.txt").read_text() == "The canteen opens at eight."
    reasons = {f.path: f.error for f in result.refused}
    assert "not accepted" in reasons["tool.exe"]
    assert "empty" in reasons["empty.txt"]
    assert "larger than" in reasons["big.pdf"]
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_only_files_inside_the_upload_folder_are_taken(tmp_path: Path) -> None:
    """A client names the path of its upload: an audit export or a stored document is refused."""
    gradio = tmp_path / "gradio-uploads"
    (gradio / "a1").mkdir(parents=True)
    uploaded = gradio / "a1" / "notes.txt"
    uploaded.write_text("The canteen opens at eight.")
    export = tmp_path / "audit-exports" / "audit-export-20260101T000000-0123456789abcdef.csv"
    export.parent.mkdir()
    export.write_text("question,answer")
    stored = tmp_path / "uploads" / "old.txt"
    stored.parent.mkdir()
    stored.write_text("already ingested")
    link = gradio / "a1" / "link.csv"
    link.symlink_to(export)
    climbing = f"{gradio}/a1/../../audit-exports/{export.name}"
    paths = [str(uploaded), str(export), str(link), climbing, str(stored)]
    received, foreign = received_files(paths, gradio)
    assert received == [uploaded.resolve()]
    assert foreign == [export.name, "link.csv", export.name, "old.txt"]

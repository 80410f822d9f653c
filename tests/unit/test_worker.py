from pathlib import Path

from appliance.errors import LoadError, ParseTimeoutError
from ingest.chunking import ChunkConfig
from ingest.worker import ParserProcess


def test_slow_file_is_stopped_and_the_following_files_still_parse(
    tmp_path: Path, embed_model_dir: Path
) -> None:
    huge = tmp_path / "huge.txt"
    huge.write_text("word " * 3_000_000, encoding="utf-8")
    small = tmp_path / "small.txt"
    small.write_text("The small file parses.", encoding="utf-8")
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"not a docx")
    config = ChunkConfig(embed_model_dir, 64, 8)
    with ParserProcess(config, timeout_s=1.0) as parser:
        outcomes = dict(parser.parse_stream([huge, broken, small]))
    assert isinstance(outcomes[huge], ParseTimeoutError)
    assert "APPLIANCE_PARSE_TIMEOUT_S" in str(outcomes[huge])
    assert isinstance(outcomes[broken], LoadError)
    small_chunks = outcomes[small]
    assert isinstance(small_chunks, list)
    assert small_chunks[0].text == "The small file parses."


def test_prestarted_worker_returns_many_large_files_whole_and_in_order(
    tmp_path: Path, embed_model_dir: Path
) -> None:
    # Each reply is larger than a pipe's buffer, and more files are in flight than the worker
    # looks ahead: replies queue up in the worker while the caller reads them one by one.
    files = []
    for number in range(30):
        path = tmp_path / f"doc{number:02d}.txt"
        path.write_text(f"Document {number} sentence. " * 3000, encoding="utf-8")
        files.append(path)
    config = ChunkConfig(embed_model_dir, 64, 8)
    with ParserProcess(config, timeout_s=60.0) as parser:
        parser.prestart()
        outcomes = list(parser.parse_stream(files))
    assert [path for path, _ in outcomes] == files
    for number, (_, chunks) in enumerate(outcomes):
        assert isinstance(chunks, list)
        text = " ".join(chunk.text for chunk in chunks)
        assert text.count(f"Document {number} sentence.") >= 3000
        assert f"Document {number + 1} sentence." not in text

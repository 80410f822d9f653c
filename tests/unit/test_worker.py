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

import logging
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.domain import ChunkText
from appliance.errors import LoadError, ParseTimeoutError
from ingest.chunking import ChunkConfig
from ingest.ocr import OcrConfig
from ingest.worker import LOOKAHEAD, ParserProcess

WORKER = "appliance-parser"


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


def test_worker_killed_during_a_run_is_logged_in_one_line_and_the_run_goes_on(
    tmp_path: Path, embed_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # More files than the worker is handed at once: some are sent after it died.
    files = []
    for number in range(LOOKAHEAD + 6):
        path = tmp_path / f"doc{number:02d}.txt"
        path.write_text(f"Document {number}.", encoding="utf-8")
        files.append(path)
    config = ChunkConfig(embed_model_dir, 64, 8)
    outcomes = []
    with (
        caplog.at_level(logging.WARNING, logger="ingest.worker"),
        ParserProcess(config, timeout_s=60.0) as parser,
    ):
        for path, outcome in parser.parse_stream(files):
            if not outcomes:
                workers = [p for p in multiprocessing.active_children() if p.name == WORKER]
                workers[0].kill()
                workers[0].join()
            outcomes.append((path, outcome))
    assert [path for path, _ in outcomes] == files
    failed = [outcome for _, outcome in outcomes if isinstance(outcome, LoadError)]
    assert len(failed) <= 1  # at most the file it was reading when killed
    assert all("killed by SIGKILL" in str(error) for error in failed)
    died = [r for r in caplog.records if "event=parser_died" in r.getMessage()]
    assert len(died) == 1
    assert "killed by SIGKILL" in died[0].getMessage()
    assert "\n" not in died[0].getMessage() and died[0].exc_info is None


WORKER_ORPHAN_SCRIPT = """
import os, sys
from pathlib import Path
from ingest.chunking import ChunkConfig
from ingest.worker import ParserProcess

if __name__ == "__main__":
    parser = ParserProcess(ChunkConfig(Path(sys.argv[1]), 64, 8), 60.0)
    print(list(parser.parse_stream([Path(sys.argv[2])]))[0][1][0].text, flush=True)
    os._exit(0)  # killed, as far as the worker can tell
"""


def test_worker_whose_caller_died_says_so_in_one_line(
    tmp_path: Path, embed_model_dir: Path
) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(WORKER_ORPHAN_SCRIPT, encoding="utf-8")
    doc = tmp_path / "doc.txt"
    doc.write_text("Orphan facts.", encoding="utf-8")
    # stderr is read to its end: until the orphaned worker has exited too.
    result = subprocess.run(
        [sys.executable, str(script), str(embed_model_dir), str(doc)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout.strip() == "Orphan facts."
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "event=parser_worker" in line]
    assert len(lines) == 1 and "went away" in lines[0], result.stderr


def greedy_parse(path: Path, chunker: object, ocr: OcrConfig) -> list[ChunkText]:
    """The worker's parse, except that a file named hungry-* asks for 8 GiB at once and one
    named oom-killed-* dies as the kernel's out-of-memory killer would make it."""
    import os
    import signal

    from ingest.worker import parse_file

    if path.name.startswith("hungry"):
        bytearray(8 * 1024**3)
    if path.name.startswith("oom-killed"):
        os.kill(os.getpid(), signal.SIGKILL)
    return parse_file(path, chunker, ocr)


def test_file_over_the_memory_limit_fails_with_the_reason_and_the_next_files_parse(
    tmp_path: Path, embed_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.documents import write_corpus

    corpus = write_corpus(tmp_path / "corpus")
    hungry = tmp_path / "hungry.txt"
    hungry.write_text("A file that needs a lot of memory.", encoding="utf-8")
    files = [hungry, *corpus.values(), hungry]
    config = ChunkConfig(embed_model_dir, 64, 8)
    with ParserProcess(config, 60.0, memory_mb=1536, parse=greedy_parse) as parser:
        outcomes = list(parser.parse_stream(files))
    assert [path for path, _ in outcomes] == files
    for _, outcome in (outcomes[0], outcomes[-1]):
        assert isinstance(outcome, LoadError)
        assert str(outcome) == (
            "the parser ran out of memory (limit 1536 MB, APPLIANCE_PARSER_MEMORY_MB): "
            "split the file, or raise the limit"
        )
    # Every reader, imported under the limit, still works.
    assert all(isinstance(outcome, list) and outcome for _, outcome in outcomes[1:-1])


def test_worker_killed_for_memory_fails_the_file_with_the_limit_and_the_run_goes_on(
    tmp_path: Path, embed_model_dir: Path
) -> None:
    killed = tmp_path / "oom-killed.txt"
    killed.write_text("A file the kernel kills the parser for.", encoding="utf-8")
    after = tmp_path / "after.txt"
    after.write_text("The file after it parses.", encoding="utf-8")
    config = ChunkConfig(embed_model_dir, 64, 8)
    with ParserProcess(config, 60.0, memory_mb=2048, parse=greedy_parse) as parser:
        outcomes = dict(parser.parse_stream([killed, after]))
    assert isinstance(outcomes[killed], LoadError)
    assert str(outcomes[killed]).startswith(
        "the parser process stopped while reading this file (killed by SIGKILL, perhaps for "
        "lack of memory): most likely the parser ran out of memory (limit 2048 MB, "
        "APPLIANCE_PARSER_MEMORY_MB)"
    )
    after_chunks = outcomes[after]
    assert isinstance(after_chunks, list)
    assert after_chunks[0].text == "The file after it parses."

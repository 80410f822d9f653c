"""`ingest`, `forget` and `status`: the document index from the command line."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.common import (
    EXIT_FAILED_FILES,
    print_json,
    settings_for_command,
    user_errors,
)
from appliance.cli.finetune_commands import adapter_status
from appliance.domain import IngestReport
from appliance.errors import ConfigError
from appliance.models import describe_llm, resolve_embed_model
from appliance.services import build_embedder, open_index
from appliance.store.check import IndexCheck, check_index, sparse_state

DEFAULT_GROUP = "everyone"


def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or folders (recursive). Default: APPLIANCE_DOCS_DIR."),
    ] = None,
    acl: Annotated[
        list[str] | None,
        typer.Option(
            "--acl", help="Group allowed to read these files (repeatable). Default: everyone."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ingest files or folders into the document index.

    New and changed files are parsed, chunked and embedded; unchanged files are skipped; files
    that disappeared from an ingested folder are removed. A file that fails is reported with its
    reason and the others are still ingested; the exit code is then 1. Stored chunks without a
    BM25 vector (a collection made before hybrid retrieval) get one first, from their stored
    text: nothing is parsed again and document groups are not touched.
    """
    from appliance.keywords import KeywordEncoder
    from ingest.chunking import ChunkConfig, check_chunk_size
    from ingest.pipeline import IngestPipeline
    from ingest.upgrade import add_sparse_vectors
    from ingest.worker import ParserProcess

    with user_errors():
        settings = settings_for_command()
        targets = paths or ([settings.docs_dir] if settings.docs_dir else [])
        if not targets:
            raise ConfigError("name a file or folder to ingest, or set APPLIANCE_DOCS_DIR")
        groups = [g.strip() for g in (acl or [DEFAULT_GROUP]) if g.strip()]
        if not groups:
            raise ConfigError("--acl needs a group name")
        model_dir = resolve_embed_model(settings.embed_model)
        check_chunk_size(model_dir, settings.chunk_size)
        config = ChunkConfig(model_dir, settings.chunk_size, settings.chunk_overlap)
        show_bar = not as_json and sys.stderr.isatty()
        with ParserProcess(config, settings.parse_timeout_s, settings.parser_memory_mb) as parser:
            parser.prestart()
            embedder = build_embedder(settings)
            index = open_index(settings, embedder)
            try:
                # Unreadable points would otherwise pass as "unchanged" files.
                check_index(index.store, index.manifest.entries(), full=True).raise_if_damaged()
                keywords = KeywordEncoder()
                added = add_sparse_vectors(index.store, keywords, headers=settings.chunk_headers)
                pipeline = IngestPipeline(
                    index.store,
                    embedder,
                    index.manifest,
                    parser,
                    int(settings.max_file_size_mb * 1_000_000),
                    keywords=keywords,
                    chunk_headers=settings.chunk_headers,
                )
                progress = _terminal_progress() if show_bar else None
                with progress if progress is not None else nullcontext():
                    report = pipeline.run(list(targets), groups, progress)
                report.sparse_added = added
            finally:
                index.close()
    if as_json:
        print_json(report.to_json())
    else:
        _print_report(report)
    if report.failed:
        raise typer.Exit(EXIT_FAILED_FILES)


def _terminal_progress():  # type: ignore[no-untyped-def]
    from appliance.cli.progress import TerminalProgress

    return TerminalProgress()


def _print_report(report: IngestReport) -> None:
    typer.echo(
        f"files: {report.new} new, {report.changed} changed, {report.unchanged} unchanged, "
        f"{report.deleted} deleted, {len(report.failed)} failed"
    )
    typer.echo(
        f"chunks: {report.chunks_added} added, {report.chunks_deleted} deleted, "
        f"{report.chunks_total} in the index ({report.seconds:.1f} s)"
    )
    if report.sparse_added:
        typer.echo(
            f"bm25:   added to {report.sparse_added} stored chunks (hybrid retrieval; "
            "nothing parsed again, groups kept)"
        )
    for failed in report.failed:
        typer.echo(f"failed: {failed.path}: {failed.error}", err=True)


def forget(
    target: Annotated[str, typer.Argument(help="A file or folder path, or a document id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Remove a document (by path or doc id) or every document under a folder from the index."""
    from ingest.pipeline import forget as forget_documents

    with user_errors():
        index = open_index(settings_for_command())
        try:
            removed = forget_documents(index.store, index.manifest, target)
        finally:
            index.close()
        if not removed:
            raise ConfigError(
                f"no indexed document matches {target!r}: "
                "see `appliance status` for what the index holds"
            )
    if as_json:
        print_json(
            {
                "removed": [
                    {"source": e.source, "doc_id": e.doc_id, "chunks": e.chunks} for e in removed
                ]
            }
        )
    else:
        for entry in removed:
            typer.echo(f"removed {entry.source} ({entry.chunks} chunks)")


def status(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also read every point back (payloads and vectors); exit 1 if it is damaged.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show documents, chunks, collection, store backend and location, the embedding model,
    the model that answers (APPLIANCE_LLM_MODEL, or the LLM server), and whether the index
    holds every chunk the manifest records (with --check: and can read them all), the
    retrieval mode (APPLIANCE_RETRIEVAL) and whether every chunk has its BM25 vector.

    The location is the embedded store's folder, or the Qdrant server's URL. A damaged index
    is named with its fix, `appliance repair`; missing BM25 vectors (a collection made before
    hybrid retrieval) with theirs, `appliance ingest`.
    """
    with user_errors():
        settings = settings_for_command()
        adapter = adapter_status(settings)
        llm = describe_llm(settings.llm_model, settings.models_dir)
        if settings.llm_url:
            llm = {"server": settings.llm_url, "model": settings.llm_remote_model}
        index = open_index(settings, allow_damaged=True)
        try:
            info = index.store.info()
            entries = list(index.manifest.entries())
            documents = len(entries)
            health = check_index(index.store, entries, full=check)
            sparse = sparse_state(index.store)
        finally:
            index.close()
    used = settings.retrieval if sparse.enabled or settings.retrieval == "dense" else "dense"
    data = {
        "documents": documents,
        "chunks": info.points,
        "collection": info.collection,
        "store": {
            "backend": info.backend,
            "location": info.location,
            # The embedded store's folder (kept for readers of earlier output); null for a server.
            "path": info.location if info.backend == "qdrant-edge" else None,
        },
        "embedding": {
            "model": info.embed_model,
            "path": str(index.embed_model_dir),
            "dimension": info.dimension,
        },
        "llm": llm,
        "adapter": adapter,
        "index": health.to_json(),
        "retrieval": {
            "mode": settings.retrieval,
            "used": used,
            "chunk_headers": settings.chunk_headers,
            "bm25_vectors": sparse.to_json(),
            "fix": None if sparse.complete else "appliance ingest",
        },
    }
    if as_json:
        print_json(data)
        if not health.ok:
            typer.echo(f"error: {health.message()}", err=True)
        _exit_if_damaged(health)
        return
    typer.echo(f"documents:  {documents}")
    typer.echo(f"chunks:     {info.points}")
    typer.echo(f"collection: {info.collection}")
    typer.echo(f"store:      {info.backend} at {info.location}")
    typer.echo(
        f"embedding:  {info.embed_model} ({info.dimension} dimensions) from {index.embed_model_dir}"
    )
    if "server" in llm:
        typer.echo(f"llm:        the server at {llm['server']}")
    else:
        state = "" if llm["present"] else " (not prepared yet: `appliance models prepare`)"
        typer.echo(f"llm:        {llm['model']} at {llm['path']}{state}")
    if adapter is not None:
        typer.echo(f"adapter:    {adapter['path']} (sha256 {adapter['sha256'][:12]})")
    fallback = f" (falls back to {used})" if used != settings.retrieval else ""
    headers = "with" if settings.chunk_headers else "without"
    typer.echo(f"retrieval:  {settings.retrieval}{fallback}, chunks embedded {headers} headers")
    typer.echo(f"bm25:       {sparse.message(settings.retrieval)}")
    _print_index_health(health)
    _exit_if_damaged(health)


def _print_index_health(health: IndexCheck) -> None:
    scope = "every point read back" if health.full else "chunk counts match the manifest"
    if health.ok:
        typer.echo(f"index:      ok ({scope})")
    else:
        typer.echo(f"index:      DAMAGED: {health.message()}")


def _exit_if_damaged(health: IndexCheck) -> None:
    if not health.ok:
        raise typer.Exit(EXIT_FAILED_FILES)

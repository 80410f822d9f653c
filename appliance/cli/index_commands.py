"""`ingest`, `forget` and `status`: the document index from the command line."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

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
from appliance.models import describe_llm
from appliance.services import open_index
from appliance.settings import Settings
from appliance.store import StoreInfo
from appliance.store.check import IndexCheck, SparseState, check_index, sparse_state

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
    with user_errors():
        settings = settings_for_command()
        targets = paths or ([settings.docs_dir] if settings.docs_dir else [])
        if not targets:
            raise ConfigError("name a file or folder to ingest, or set APPLIANCE_DOCS_DIR")
        groups = [g.strip() for g in (acl or [DEFAULT_GROUP]) if g.strip()]
        if not groups:
            raise ConfigError("--acl needs a group name")
        report = _run_ingest(settings, list(targets), groups, show_bar=not as_json)
    if as_json:
        print_json(report.to_json())
    else:
        _print_report(report)
    if report.failed:
        raise typer.Exit(EXIT_FAILED_FILES)


def _run_ingest(
    settings: Settings, targets: list[Path], groups: list[str], *, show_bar: bool
) -> IngestReport:
    from appliance.services.ingest import build_ingest_services
    from ingest.upgrade import add_sparse_vectors

    with build_ingest_services(settings) as parts:
        added = add_sparse_vectors(
            parts.index.store, parts.keywords, headers=settings.chunk_headers
        )
        progress = _terminal_progress() if show_bar and sys.stderr.isatty() else None
        with progress if progress is not None else nullcontext():
            report = parts.pipeline.run(targets, groups, progress)
        report.sparse_added = added
        report.embedder_loaded = parts.embedder.loaded
    return report


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
        settings = settings_for_command(served_adapter=True)
        adapter = adapter_status(settings)
        llm = describe_llm(settings.llm_model, settings.models_dir)
        if settings.llm_url:
            llm = {"server": settings.llm_url, "model": settings.llm_remote_model}
        index = open_index(settings, allow_damaged=True)
        try:
            info = index.store.info()
            entries = list(index.manifest.entries())
            health = check_index(index.store, entries, full=check)
            sparse = sparse_state(index.store)
        finally:
            index.close()
    data = _status_data(
        settings,
        documents=len(entries),
        info=info,
        embed_model_dir=index.embed_model_dir,
        llm=llm,
        adapter=adapter,
        health=health,
        sparse=sparse,
    )
    if as_json:
        print_json(data)
        if not health.ok:
            typer.echo(f"error: {health.message()}", err=True)
        _exit_if_damaged(health)
        return
    _print_status(data, sparse.message(settings.retrieval))
    _print_index_health(health)
    _exit_if_damaged(health)


def _status_data(
    settings: Settings,
    *,
    documents: int,
    info: StoreInfo,
    embed_model_dir: Path,
    llm: dict[str, object],
    adapter: dict[str, str | None] | None,
    health: IndexCheck,
    sparse: SparseState,
) -> dict[str, Any]:
    """`status --json`'s object; the retrieval mode used falls back to dense without BM25."""
    used = settings.retrieval if sparse.enabled or settings.retrieval == "dense" else "dense"
    return {
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
            "path": str(embed_model_dir),
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


def _print_status(data: dict[str, Any], bm25: str) -> None:
    """`status`'s lines, up to the index's health, from `status --json`'s object."""
    store, embedding, llm = data["store"], data["embedding"], data["llm"]
    typer.echo(f"documents:  {data['documents']}")
    typer.echo(f"chunks:     {data['chunks']}")
    typer.echo(f"collection: {data['collection']}")
    typer.echo(f"store:      {store['backend']} at {store['location']}")
    typer.echo(
        f"embedding:  {embedding['model']} ({embedding['dimension']} dimensions) "
        f"from {embedding['path']}"
    )
    if "server" in llm:
        typer.echo(f"llm:        the server at {llm['server']}")
    else:
        state = "" if llm["present"] else " (not prepared yet: `appliance models prepare`)"
        typer.echo(f"llm:        {llm['model']} at {llm['path']}{state}")
    adapter = data["adapter"]
    if adapter is not None:
        chosen = f"promoted {adapter['name']}" if adapter["name"] else "APPLIANCE_LLM_ADAPTER"
        sha256 = str(adapter["sha256"])[:12]
        typer.echo(f"adapter:    {adapter['path']} (sha256 {sha256}, {chosen})")
    retrieval = data["retrieval"]
    mode, used = retrieval["mode"], retrieval["used"]
    fallback = f" (falls back to {used})" if used != mode else ""
    headers = "with" if retrieval["chunk_headers"] else "without"
    typer.echo(f"retrieval:  {mode}{fallback}, chunks embedded {headers} headers")
    typer.echo(f"bm25:       {bm25}")


def _print_index_health(health: IndexCheck) -> None:
    scope = "every point read back" if health.full else "chunk counts match the manifest"
    if health.ok:
        typer.echo(f"index:      ok ({scope})")
    else:
        typer.echo(f"index:      DAMAGED: {health.message()}")


def _exit_if_damaged(health: IndexCheck) -> None:
    if not health.ok:
        raise typer.Exit(EXIT_FAILED_FILES)

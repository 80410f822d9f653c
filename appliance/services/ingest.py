"""Every part `appliance ingest` needs: the parser process, the lazily loaded embedder, the
index (read back whole first) and the pipeline over them."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

from appliance.embedding import LazyEmbedder
from appliance.keywords import KeywordEncoder
from appliance.models import resolve_embed_model
from appliance.services.index import IndexServices, build_ingest_embedder, enter_index
from appliance.settings import Settings
from appliance.store.check import check_index
from ingest.chunking import ChunkConfig, check_chunk_size
from ingest.ocr import ocr_config
from ingest.pipeline import IngestPipeline
from ingest.worker import ParserProcess


@dataclass
class IngestServices:
    index: IndexServices
    embedder: LazyEmbedder  # loads only when a file needs embedding: not for an unchanged folder
    keywords: KeywordEncoder
    parser: ParserProcess
    pipeline: IngestPipeline
    resources: ExitStack = field(default_factory=ExitStack, repr=False)

    def close(self) -> None:
        """Close the index, then stop the parser process."""
        self.resources.close()

    def __enter__(self) -> IngestServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_ingest_services(settings: Settings, *, rebuild: bool = False) -> IngestServices:
    """The parts of one ingestion run, or none: a part that fails closes those opened before
    it. The index must be whole (unreadable points would otherwise pass as unchanged files),
    unless `rebuild` starts its collection empty (`appliance repair`)."""
    model_dir = resolve_embed_model(settings.embed_model)
    check_chunk_size(model_dir, settings.chunk_size)
    config = ChunkConfig(model_dir, settings.chunk_size, settings.chunk_overlap)
    with ExitStack() as stack:
        parser = stack.enter_context(
            ParserProcess(
                config,
                settings.parse_timeout_s,
                settings.parser_memory_mb,
                ocr=ocr_config(settings),
            )
        )
        parser.prestart()  # its imports overlap opening and checking the index
        embedder = build_ingest_embedder(settings)
        index = enter_index(stack, settings, embedder, rebuild=rebuild)
        if not rebuild:
            check_index(index.store, index.manifest.entries(), full=True).raise_if_damaged()
        keywords = KeywordEncoder()
        pipeline = IngestPipeline(
            index.store,
            embedder,
            index.manifest,
            parser,
            settings.max_file_size_bytes,
            keywords=keywords,
            chunk_headers=settings.chunk_headers,
        )
        services = IngestServices(index, embedder, keywords, parser, pipeline)
        services.resources = stack.pop_all()
    return services

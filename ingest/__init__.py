"""Ingestion: files in, chunks with stable ids out, into the vector store."""

"""Private RAG appliance: local documents, local embeddings, local model, audited answers."""

__version__ = "0.1.0"

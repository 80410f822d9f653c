"""Gradio Blocks for the web UI (chat, sources, documents, audit): built in the web-app issue."""

"""The web server: FastAPI with the Gradio UI mounted, the OpenAI-compatible API, ops routes."""

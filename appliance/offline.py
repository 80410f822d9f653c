"""No outbound network at run time: every library that could phone home is told not to.

What each part does (checked in the installed versions; `tests/integration/test_offline.py`
runs ingest, ask and serve in a network namespace with only loopback):
- Hugging Face (huggingface_hub, transformers, sentence-transformers): offline mode, so
  models load from local folders only and no telemetry or update check is sent.
- Gradio: analytics off, which also turns off its version check (api.gradio.app).
- FastAPI and OpenTelemetry: FastAPI exports traces only when OTLP auto-configuration is on;
  it is kept off, and the OpenTelemetry SDK is disabled.
- torch: sends no telemetry; torch.hub downloads only when called, which the appliance
  never does. Nothing to configure.
- Qdrant: the embedded Qdrant Edge and qdrant-client send no telemetry (a Qdrant server's own
  usage reporting is turned off in its deployment, QDRANT__TELEMETRY_DISABLED).
- llama.cpp, llama-index: no telemetry; llama-index uses its bundled NLTK and tiktoken data.
"""

import os

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "FASTAPI_OTEL_AUTO_CONFIGURE": "false",
    "OTEL_SDK_DISABLED": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def enforce_offline() -> None:
    """Called first by every entry point, before any model library is imported."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ[name] = value

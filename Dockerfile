# syntax=docker/dockerfile:1.7
# The seqserve inference server.
#
#   docker build -t seqserve .                            ONNX Runtime only (target `runtime`, the default)
#   docker build --target runtime-tf -t seqserve:tf .     adds TensorFlow for SavedModel serving (--runtime tf)
#   --build-arg MODELS=<dir in the build context>         model repository baked in at /models [models]
#
# Mount a repository over /models instead of baking one in: docker run -v "$PWD/models:/models:ro" ...
# Every server setting is a SEQSERVE_* variable (`seqserve serve --help`); flags after the image name
# are appended to the command.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV VIRTUAL_ENV=/opt/seqserve \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
ENV PATH=${VIRTUAL_ENV}/bin:${PATH}

# The virtualenv has no pip of its own (the base image's pip installs into it), so the runtime image
# carries only the server and its dependencies.
# Dependencies come from the lock (every transitive one pinned; `make lock` writes it), in a layer of
# their own that a change to the code does not rebuild; the project follows without resolving again.
FROM base AS build
WORKDIR /src
COPY requirements-runtime.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv --without-pip "$VIRTUAL_ENV" \
    && pip --python "$VIRTUAL_ENV/bin/python" install -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY seqserve/ seqserve/
COPY serving/ serving/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip --python "$VIRTUAL_ENV/bin/python" install --no-deps .

# TensorFlow's dependencies within requirements.lock, the full lock, which holds the tf extra's too.
FROM build AS build-tf
COPY requirements.lock ./
# DL3013: ".[tf]" is this project; every version is pinned by the constraints file.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip --python "$VIRTUAL_ENV/bin/python" install -c requirements.lock ".[tf]"

# tini as PID 1: the kernel ignores SIGTERM sent to a PID 1 that has no handler yet, which the server is
# for the seconds it spends importing; tini forwards the signal at any time, reaps orphans and passes
# the server's exit code on.
FROM base AS runtime-base
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 seqserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin seqserve
COPY deploy/docker/healthcheck.py /opt/seqserve-healthcheck.py
# SEQSERVE_WORKERS: server processes on the one gRPC port; give one per CPU the container gets
# (deploy/k8s sets 2 with 2 CPUs requested).
ENV SEQSERVE_WORKERS=1 \
    SEQSERVE_MODEL_REPOSITORY=/models \
    SEQSERVE_HOST=0.0.0.0 \
    SEQSERVE_PORT=8500 \
    SEQSERVE_REST_PORT=8501 \
    SEQSERVE_METRICS_PORT=8502 \
    SEQSERVE_LOG_FORMAT=json
# gRPC (seqserve.v1.Classifier, KServe V2, grpc.health.v1, reflection), KServe V2 REST and the
# compare page, Prometheus /metrics
EXPOSE 8500 8501 8502
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/seqserve-healthcheck.py"]
ENTRYPOINT ["tini", "--", "seqserve", "serve"]

FROM runtime-base AS runtime-tf
COPY --from=build-tf /opt/seqserve /opt/seqserve
ENV SEQSERVE_RUNTIME=tf
ARG MODELS=models
COPY ${MODELS}/ /models/

FROM runtime-base AS runtime
COPY --from=build /opt/seqserve /opt/seqserve
ARG MODELS=models
COPY ${MODELS}/ /models/

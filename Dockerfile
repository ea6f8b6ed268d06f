# forge-ref: the gateway image (default target) and the load generator (target loadgen).
#
#   docker build -t forge-ref .                              # the gateway
#   docker build -t forge-ref-loadgen --target loadgen .     # + Locust and benchmarks/ (seed, load)
#
# Configuration is by environment only (FORGE_*, REDIS_URL: the README's Configuration table);
# no secret is baked in. PYTHON_IMAGE lets a machine without registry access build from a local
# Python 3.11 image (the README's Container section says how this one was tested).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/forge
WORKDIR /src
# Only the runtime packages: setuptools packs what it finds, so leaving benchmarks/ out of this
# stage keeps it out of the image. forge_mock stays only because compose runs the mock from this
# same image; `forge-ref` works without it (its mock-provider command then says it is not installed).
COPY pyproject.toml README.md ./
COPY forge_ref/ forge_ref/
COPY forge_mock/ forge_mock/
# No extra: the dev extra (pytest, SDKs, Locust, pandas...) is not runtime. The pycurl wheel
# (manylinux) bundles libcurl, OpenSSL and nghttp2, so the image needs no libcurl package.
RUN /opt/forge/bin/pip install . && /opt/forge/bin/forge-ref --help >/dev/null

FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 forge \
 && useradd --system --uid 10001 --gid forge --home-dir /data --no-create-home --shell /usr/sbin/nologin forge \
 && mkdir /data && chown forge:forge /data
COPY --from=build /opt/forge /opt/forge
# FORGE_DB: the SQLite default when no postgresql:// URL is given (mount a named volume on /data:
# it starts owned by forge; the generated encryption-key file lands beside the database unless
# FORGE_ENCRYPTION_KEY is set). No VOLUME line: nodes on PostgreSQL need no disk.
ENV PATH=/opt/forge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FORGE_HOST=0.0.0.0 \
    FORGE_PORT=8000 \
    FORGE_DB=/data/forge.db
WORKDIR /data
USER forge
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FORGE_PORT', '8000'), timeout=2)"]
# Exec form: forge-ref is PID 1 and gets SIGTERM itself. It handles SIGTERM (drains, exits 0), which
# PID 1 must: the kernel drops signals PID 1 has no handler for; with FORGE_PROCESSES>1 the parent
# passes it to its workers. Scale with containers, one process each.
ENTRYPOINT ["forge-ref"]
CMD ["serve"]

# The load generator: the gateway image plus Locust, locustfile.py and benchmarks/ (seed, profiles,
# traffic), run from /bench so that `python -m benchmarks` and the locustfile find them.
FROM base AS loadgen
USER root
RUN /opt/forge/bin/pip install --no-cache-dir --disable-pip-version-check "locust>=2.30"
WORKDIR /bench
COPY benchmarks/ benchmarks/
COPY locustfile.py ./
USER forge
HEALTHCHECK NONE
ENTRYPOINT []
CMD ["locust", "--help"]

# Last, so that a plain `docker build .` gives the gateway.
FROM base AS gateway

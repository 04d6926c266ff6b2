# cacheproxy, e.g.:
#   docker build -t cacheproxy .
#   docker run -p 8080:8080 -e CACHEPROXY_UPSTREAM=http://api:9000 -v ./config:/etc/cacheproxy cacheproxy
# Mount a directory, not the single file: editors and config tools save by renaming a new file over the old one,
# which a single-file bind mount never sees; through a directory the rules watcher reloads on every save.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install . && useradd --system --uid 10001 --no-create-home cacheproxy

# Default rules (HTTP headers decide), replaced by mounting a directory over /etc/cacheproxy; beside them the
# commented reference of every field.
COPY deploy/rules.yaml /etc/cacheproxy/rules.yaml
COPY rules.yaml /etc/cacheproxy/rules.example.yaml
COPY deploy/healthcheck.py /usr/local/lib/cacheproxy/healthcheck.py

USER cacheproxy
# Listen on every interface inside the container. The admin surface (purge, metrics, status page) answers
# loopback only, and the host is not loopback here: set CACHEPROXY_ADMIN_TOKEN and send
# 'Authorization: Bearer <token>' (or run `cacheproxy purge`, which reads the same variable).
ENV CACHEPROXY_HOST=0.0.0.0 \
    CACHEPROXY_PORT=8080 \
    CACHEPROXY_RULES=/etc/cacheproxy/rules.yaml
EXPOSE 8080

# Follows CACHEPROXY_PORT and CACHEPROXY_ADMIN_PREFIX (healthz answers every client).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "/usr/local/lib/cacheproxy/healthcheck.py"]

# SIGTERM lets in-flight requests finish (uvicorn's graceful shutdown).
STOPSIGNAL SIGTERM
ENTRYPOINT ["cacheproxy", "serve"]

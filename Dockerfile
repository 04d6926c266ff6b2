# cacheproxy: docker build -t cacheproxy . && docker run -p 8080:8080 -e CACHEPROXY_UPSTREAM=http://api:9000 cacheproxy
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md rules.yaml ./
COPY proxy ./proxy
RUN pip install . && useradd --system --uid 10001 --no-create-home cacheproxy

USER cacheproxy
# Listen on every interface inside the container; the admin surface still answers loopback only unless
# CACHEPROXY_ADMIN_TOKEN is set (health probes answer everyone).
ENV CACHEPROXY_HOST=0.0.0.0 \
    CACHEPROXY_PORT=8080
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/_cacheproxy/healthz', timeout=2)"

# SIGTERM lets in-flight requests finish (uvicorn's graceful shutdown).
STOPSIGNAL SIGTERM
ENTRYPOINT ["cacheproxy", "serve"]

# One image for the api, the worker and the scheduler:
#   docker run wojia                          -> api on :8000
#   docker run wojia wojia worker             -> job worker
#   docker run wojia wojia scheduler          -> periodic jobs
# The assistant (Rasa 3.6, Python 3.10) runs from its own image: see bot/.
FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app_api ./app_api
COPY columns ./columns
COPY payments ./payments
COPY identity ./identity
COPY miniprogram_bridge ./miniprogram_bridge
COPY bot ./bot
# Installed as a wheel (not editable): the runtime image gets the venv only, so the protocol
# sandboxes, which the wheel leaves out, are not in the production image.
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm AS runtime
# libgomp1 and libstdc++ for dlib; no compilers in the runtime image.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system wojia && useradd --system --gid wojia --home /app --shell /usr/sbin/nologin wojia
WORKDIR /app
COPY --from=build --chown=wojia:wojia /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    WOJIA_ENVIRONMENT=production \
    WOJIA_VAR_DIR=/app/var \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN mkdir -p /app/var /tmp/prometheus && chown wojia:wojia /app/var /tmp/prometheus
USER wojia
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["wojia", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4", "--no-migrate"]

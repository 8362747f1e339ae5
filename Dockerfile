# The dashboard's chart library comes from the npm registry (scripts/install-echarts: pinned, integrity checked)
FROM node:24-slim AS dashboard-assets
WORKDIR /src
COPY scripts/install-echarts scripts/
RUN scripts/install-echarts

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY online_models online_models
COPY api api
COPY --from=dashboard-assets /src/api/static/vendor api/static/vendor
RUN pip install --no-cache-dir .
ENV PORTRAITS_DATA_DIR=/data PORTRAITS_API_HOST=0.0.0.0
VOLUME /data
ENTRYPOINT ["portraits"]

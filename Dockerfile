# aiq-search workers, dashboard and export in one image: PyTorch with CUDA (runs on the CPU without a GPU).
# Build: docker build -t aiq-search .    Run: docker run --rm aiq-search --help
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIQ_DATA_DIR=/srv/aiq/data

# The package (with the export extra, for model.onnx). The constraint keeps the base image's CUDA build of
# torch: without it, resolving torchvision could replace it with another torch from PyPI.
WORKDIR /opt/aiq-search
COPY pyproject.toml README.md ./
COPY aiq_search ./aiq_search
RUN python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/keep-torch.txt \
    && pip install --constraint /tmp/keep-torch.txt ".[export]" \
    && rm /tmp/keep-torch.txt \
    && aiq-search --version

# A non-root user owning the working folder. Named volumes mounted at /srv/aiq/{artifacts,data,exports}
# start as copies of these folders, so they are writable by this user too.
RUN useradd --create-home --user-group aiq \
    && mkdir -p /srv/aiq/artifacts /srv/aiq/data /srv/aiq/exports /srv/aiq/runs \
    && chown -R aiq:aiq /srv/aiq
COPY --chown=aiq:aiq studies /srv/aiq/studies
USER aiq
# Study files name relative paths (artifacts/<study>, runs/...): they resolve here in every container.
WORKDIR /srv/aiq

ENTRYPOINT ["aiq-search"]
CMD ["--help"]

# One image for the Python services of compose.yaml (sim, connectors, train, analytics):
# the `shopfloor` command, run as an unprivileged user.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml ./
# every product package (tests/test_layout.py lists them); testbed/ serves tests only
COPY core core
COPY plc_sim plc_sim
COPY connectors connectors
COPY delivery delivery
COPY historian historian
COPY uns uns
COPY analytics analytics
COPY linelab linelab
COPY liveview liveview
COPY shopfloor shopfloor
RUN pip install . \
    && useradd --system --home-dir /var/lib/shopfloor shopfloor \
    && mkdir -p /var/lib/shopfloor/spool /var/lib/shopfloor/models \
    && chown -R shopfloor:shopfloor /var/lib/shopfloor

USER shopfloor
WORKDIR /var/lib/shopfloor
EXPOSE 4840 5020
ENTRYPOINT ["shopfloor"]
CMD ["--help"]

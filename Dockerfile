# One container: gunicorn serving the app with the scheduler on; SQLite database, secret key and nightly
# backups (/data/backups) under /data.
# Run:  docker run -p 8000:8000 -v invoicing-data:/data -e SECRET_KEY=... -e BASE_URL=https://billing.example.com IMAGE
# BASE: the official Python image by default; any Debian bookworm image works too (Debian's python3 is then
# installed), which is how CI builds it without a registry (.ci/run).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# WeasyPrint (invoice PDFs) needs Pango and a font; backups of a PostgreSQL DATABASE_URL need pg_dump and
# pg_restore (Debian 12: PostgreSQL 15's client, for servers up to 15).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
      fonts-dejavu-core postgresql-client $(command -v python3 >/dev/null || echo python3 python3-venv) \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && useradd --system --home-dir /data --shell /usr/sbin/nologin invoicing \
 && mkdir -p /data && chown invoicing /data
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
# Dependencies first: this layer is reused until pyproject.toml changes. The CA bundle is only for builds
# behind a TLS-inspecting proxy (--secret id=cacert,src=...); without it pip uses its own.
COPY pyproject.toml .
RUN --mount=type=secret,id=cacert,required=false \
    if [ -f /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi \
 && python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
      > /tmp/requirements.txt \
 && pip install -q -r /tmp/requirements.txt "setuptools>=70.1" && rm /tmp/requirements.txt
COPY . .
RUN pip install -q --no-deps --no-build-isolation -e . && python3 -m compileall -q invoicing

ENV PYTHONUNBUFFERED=1 INSTANCE_PATH=/data FLASK_APP=wsgi SCHEDULER_ENABLED=1 HOME=/data PORT=8000
USER invoicing
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
  CMD python3 -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/healthz', timeout=4)"
# Migrations run here, at container start, never inside create_app. gunicorn listens on 0.0.0.0:$PORT; its
# settings (one process, threads, timeouts, redacted access log) are in invoicing/gunicorn_conf.py.
ENTRYPOINT ["sh", "-c", "flask db upgrade && exec \"$@\"", "--"]
CMD ["gunicorn", "-c", "python:invoicing.gunicorn_conf", "wsgi:app"]

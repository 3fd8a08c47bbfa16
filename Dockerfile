# One container: gunicorn serving the app with the scheduler on; SQLite database, secret key and nightly
# backups (/data/backups) under /data.
# Run:  docker run -p 8000:8000 -v invoicing-data:/data -e SECRET_KEY=... -e BASE_URL=https://billing.example.com IMAGE
FROM python:3.11-slim-bookworm

# WeasyPrint (invoice PDFs) needs Pango and a font; backups of a PostgreSQL DATABASE_URL need pg_dump and
# pg_restore (Debian 12: PostgreSQL 15's client, for servers up to 15).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    postgresql-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -e . \
 && useradd --system --home /data invoicing && mkdir -p /data && chown invoicing /data

ENV PYTHONUNBUFFERED=1 INSTANCE_PATH=/data FLASK_APP=wsgi SCHEDULER_ENABLED=1
USER invoicing
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
  CMD python -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1
# Migrations run here, at container start, never inside create_app.
ENTRYPOINT ["sh", "-c", "flask db upgrade && exec \"$@\"", "--"]
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--no-control-socket", "--access-logfile", "-", \
     "--logger-class", "invoicing.logredact.RedactingGunicornLogger", "wsgi:app"]

# One image for the three Procfile processes (web, worker, beat); docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Hash-checked, pinned dependencies first: this layer is rebuilt only when the lock changes.
# requirements.lock is production's: no in-process stand-ins (mongomock, fakeredis), so
# MONGODB_URI and REDIS_URL must be set (the settings check says so in one line).
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY app.py gunicorn.conf.py Procfile ./
COPY jollyjet ./jollyjet
COPY tasks ./tasks

# Never run as root.
RUN useradd --create-home --uid 10001 jollyjet
USER jollyjet

ENV PORT=8000
EXPOSE 8000
# Liveness of the web process (the default command), with the standard library: slim images
# have no curl. Liveness, not readiness: Docker's health status is what Swarm and similar
# platforms restart on, and a MongoDB outage (readiness 503) must not restart every web
# container. Routing uses /health/ready (docker-compose.yml's web; docs/operations.md).
# A container running the worker or beat overrides this (docker-compose.yml does).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["sh", "-c", "exec gunicorn app:app --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --threads ${WEB_THREADS:-4} --timeout 30 --no-control-socket"]

# One image for the three Procfile processes (web, worker, beat); docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Hash-checked, pinned dependencies first: this layer is rebuilt only when the lock changes.
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
CMD ["sh", "-c", "exec gunicorn app:app --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --threads ${WEB_THREADS:-4} --timeout 30 --no-control-socket --access-logfile -"]

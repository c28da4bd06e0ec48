# One image for every process: the API (the default command), the workers, beat, Flower and the
# simulated provider differ only by command (see docker-compose.yml and the Procfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY api ./api
COPY workers ./workers
COPY shared ./shared
RUN pip install .

RUN useradd --system --create-home --uid 10001 --user-group council \
    && install -d -o council -g council /var/lib/llm-council
USER council
# Writable by the service user: Celery beat keeps its schedule file in the working directory.
WORKDIR /var/lib/llm-council

EXPOSE 8000
CMD ["sh", "-c", "exec gunicorn --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-2} --worker-class gthread --threads 256 --config python:api.gunicorn_conf 'api:create_app()'"]

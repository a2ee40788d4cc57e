# One image for web, worker, beat and migrations (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are baked into the image and served by whitenoise from gunicorn. (A throwaway
# key for this one command, so no embedded-demo secret key is baked into the image.)
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --system --home /app app \
    && chown -R app /app/var
USER app

EXPOSE 8000
CMD ["gunicorn", "orderproj.wsgi:application", "--bind", "0.0.0.0:8000"]

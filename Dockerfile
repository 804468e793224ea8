# One image for the api, worker and agent services of docker-compose.yml.
# Stage 1 builds the widget and dashboard (api/static is generated, never committed).
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# Stage 2: the locked Python environment without dev tools, run as an unprivileged user.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project && rm -rf /root/.cache
COPY . .
COPY --from=web /src/api/static ./api/static
RUN useradd --system --uid 10001 --no-create-home --home-dir /app callcenter
# The agent's spool volume (/spool) starts with this ownership, so the unprivileged user can write it.
RUN mkdir -p /spool && chown 10001 /spool
USER 10001
EXPOSE 8000 8081
CMD ["python", "-m", "api"]

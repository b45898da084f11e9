#!/usr/bin/env bash
# Runs once, when the postgres volume is empty (docker-entrypoint-initdb.d): one role and one
# database for the Prefect server and one for the MLflow tracking server, each with its own
# password from .env. Changing a password in .env later does not change it here: use
# `ALTER ROLE ... PASSWORD` (see the README's Deploy section) or start from a new volume.
set -e

: "${PREFECT_DB_PASSWORD:?set PREFECT_DB_PASSWORD in .env}"
: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in .env}"

# Passwords go in as psql variables (:'name' quotes them), never spliced into the SQL text.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v prefect_password="$PREFECT_DB_PASSWORD" \
    -v mlflow_password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
-- Prefect's migrations need pg_trgm; create it as the superuser.
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL

#!/bin/sh
# Like the official image: a program on PATH runs as is, anything else is an
# airflow subcommand ("scheduler", "db migrate").
if command -v "$1" >/dev/null 2>&1; then exec "$@"; fi
exec airflow "$@"

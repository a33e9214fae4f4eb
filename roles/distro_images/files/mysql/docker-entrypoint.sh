#!/bin/bash
# First start: initialise the data directory, set the root password, create the
# application database and user, run /docker-entrypoint-initdb.d/*.sql.
# Like the official image, VAR_FILE names a file holding VAR (a Docker secret).
set -euo pipefail

for var in MYSQL_ROOT_PASSWORD MYSQL_PASSWORD; do
  file_var="${var}_FILE"
  if [ -n "${!file_var:-}" ]; then
    if [ -n "${!var:-}" ]; then
      echo "docker-entrypoint: both $var and $file_var are set; set one" >&2
      exit 1
    fi
    export "$var=$(cat "${!file_var}")"
    unset "$file_var"
  fi
done

if [ "${1:0:1}" = "-" ]; then set -- mysqld "$@"; fi
if [ "$1" != "mysqld" ]; then exec "$@"; fi

datadir=/var/lib/mysql
chown mysql:mysql "$datadir" /run/mysqld
# Files of an earlier image whose mysql user had another uid.
find "$datadir" ! -user mysql -exec chown mysql:mysql {} +

if [ ! -d "$datadir/mysql" ]; then
  for var in MYSQL_ROOT_PASSWORD MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD; do
    if [ -z "${!var:-}" ]; then
      echo "docker-entrypoint: $var is not set; it is required to initialise an empty data directory" >&2
      exit 1
    fi
  done
  echo "docker-entrypoint: initialising $datadir"
  mysqld --initialize-insecure --user=mysql --datadir="$datadir"
  socket=/run/mysqld/init.sock
  mysqld --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
  pid=$!
  for _ in $(seq 60); do
    mysqladmin --socket="$socket" -uroot ping --silent 2>/dev/null && break
    sleep 1
  done
  mysql --socket="$socket" -uroot <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD//\'/\'\'}';
CREATE DATABASE IF NOT EXISTS \`${MYSQL_DATABASE}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER '${MYSQL_USER}'@'%' IDENTIFIED BY '${MYSQL_PASSWORD//\'/\'\'}';
GRANT ALL PRIVILEGES ON \`${MYSQL_DATABASE}\`.* TO '${MYSQL_USER}'@'%';
SQL
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    echo "docker-entrypoint: running $f"
    mysql --socket="$socket" -uroot -p"$MYSQL_ROOT_PASSWORD" "$MYSQL_DATABASE" < "$f"
  done
  mysqladmin --socket="$socket" -uroot -p"$MYSQL_ROOT_PASSWORD" shutdown
  wait "$pid"
  echo "docker-entrypoint: initialised"
fi

exec "$@" --user=mysql

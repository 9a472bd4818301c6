#!/bin/sh
# One database and role per service, passwords from the environment (see .env.example).
set -eu
for svc in cmdb pipeline monitor elastic decision; do
  var=$(echo "$svc" | tr a-z A-Z)_DB_PASSWORD
  eval "pw=\${$var}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$svc" -v pw="$pw" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
CREATE DATABASE :"role" OWNER :"role";
SQL
done

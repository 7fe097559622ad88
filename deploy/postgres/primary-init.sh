#!/usr/bin/env bash
# Run once by the postgres image's entrypoint when it creates the primary's data directory
# (/docker-entrypoint-initdb.d/): a role and a physical replication slot for the streaming
# replica, and the pg_hba.conf line that lets it connect for replication ("all" in the
# database column does not cover replication connections).
set -euo pipefail
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set replication_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'replication_password';
-- The slot keeps the WAL the replica has not received yet (through a restart of the replica).
SELECT pg_create_physical_replication_slot('taskgraph_replica');
SQL

printf 'host replication replicator all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

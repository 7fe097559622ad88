#!/usr/bin/env bash
# The streaming replica's entrypoint: on first start, clone the primary with pg_basebackup
# (-R writes primary_conninfo and standby.signal), then run PostgreSQL as a hot standby.
# Runs as the postgres user (compose: `user: postgres`).
set -euo pipefail
: "${PGDATA:?}" "${PRIMARY_HOST:?}" "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    until pg_isready --host "$PRIMARY_HOST" --quiet; do
        echo "waiting for the primary at $PRIMARY_HOST"
        sleep 1
    done
    PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup --host "$PRIMARY_HOST" \
        --username replicator --pgdata "$PGDATA" --wal-method stream \
        --slot taskgraph_replica --write-recovery-conf --checkpoint fast --progress
fi
exec postgres -c hot_standby=on "$@"

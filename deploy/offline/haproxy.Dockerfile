# A stand-in for the official haproxy image: Debian's HAProxy (2.6), as its user, reading
# /usr/local/etc/haproxy/haproxy.cfg as the official image does.
ARG BASE_IMAGE=taskgraph-offline/debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends haproxy \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]

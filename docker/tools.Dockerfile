# Release tools the pipeline runs as a container: cosign signs, attests and verifies images.
# Debian trixie packages cosign 2.5; nothing is downloaded outside the distribution's archive.
# socat: on Dagger it relays a registry on the host's loopback into the container under the same
# address (ci/engines/dagger.py, RELAY), so cosign signs the names it signs on the local engine.
ARG BASE_IMAGE=debian:trixie-slim

FROM ${BASE_IMAGE} AS tools
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates cosign socat \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/*
ENTRYPOINT ["cosign"]

# sluice: a scheduling reverse proxy for Ollama.
#
#   docker build -t sluice .
#   docker run --rm -p 11435:11435 --add-host host.docker.internal:host-gateway \
#     sluice --upstream http://host.docker.internal:11434
#   docker compose -f deploy/compose.yaml up        # sluice + Ollama on one network
#
# docs/operations.md ("Containers") says what each part does and what works on Linux and macOS;
# scripts/container-check.sh builds the image and checks all of it on a Docker engine.
#
# Stage 1 builds on Debian 12 with the script developers use (scripts/setup.sh --image installs
# only what a Release build without the micro-benchmarks and its tests need; never libboost-dev)
# and runs the test suite, so an image only exists for a tree whose tests pass. Stage 2 is a slim
# Debian 12 with the shared libraries the binaries link, the two binaries (stripped) and the
# container config, running as UID/GID 10001.

FROM debian:12 AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh --image && rm -rf /var/lib/apt/lists/*
COPY . .
RUN rm -rf build \
 && SLUICE_JOBS="$(nproc)" scripts/build.sh build -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=OFF \
 && cd build && ctest --output-on-failure --timeout 600 -j 2
# The tested binaries without their symbol tables.
RUN install -D --strip -m 0755 build/src/app/sluice /out/sluice \
 && install -D --strip -m 0755 build/src/sim/sluice-sim /out/sluice-sim

FROM debian:12-slim AS runtime
# Runtime libraries of sluice and sluice-sim (check with: ldd /usr/local/bin/sluice). A fixed
# numeric UID/GID, so volume permissions and runAsNonRoot-style checks do not depend on the order
# packages created users in.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libboost-url1.81.0 libssl3 \
      libtcmalloc-minimal4 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sluice
COPY --from=build /out/sluice /out/sluice-sim /usr/local/bin/
# listen/admin_listen 0.0.0.0, upstream http://ollama:11434, drain_timeout 8s (config/container.json
# says why). Mount your own config over it; flags after the image name override single fields.
COPY config/container.json /etc/sluice/sluice.json
# Fails the build if a runtime library is missing or the config does not load.
RUN sluice --check-config /etc/sluice/sluice.json && sluice-sim --help >/dev/null
USER 10001:10001
# 11435: clients (the Ollama API); 11436: admin (/metrics /healthz /readyz /admin/*), keep private.
EXPOSE 11435 11436
# sluice drains on SIGTERM (docker stop): parked requests get 503, running ones get up to
# shutdown.drain_timeout (8s here, below docker stop's default 10 s; raise both together with
# docker run --stop-timeout / compose stop_grace_period).
STOPSIGNAL SIGTERM
# GET /healthz on the admin listener the config names (or, with admin_listen "", a TCP connect to
# the client listener). It reads the config file, not the flags: after moving or disabling the
# admin listener with a flag, pass the same flag here (docker run --health-cmd).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["sluice", "--config", "/etc/sluice/sluice.json", "healthcheck"]
# The config path is part of the entrypoint, so arguments to `docker run IMAGE ...` add flags to it
# (CMD is replaced as a whole by run arguments; a --config there would be lost with the first one).
ENTRYPOINT ["sluice", "--config", "/etc/sluice/sluice.json"]
CMD []

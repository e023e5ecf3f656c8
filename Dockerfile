# sluice: a scheduling reverse proxy for Ollama.
#
#   docker build -t sluice .
#   docker run --rm -p 11435:11435 sluice --upstream http://host.docker.internal:11434
#
# Stage 1 builds on Debian 12 with the same script developers use (scripts/setup.sh installs the
# packages; never libboost-dev) and runs the test suite, so an image only exists for a tree whose
# tests pass. Stage 2 is a slim Debian 12 with only the shared libraries the binaries link, the
# binaries themselves and the example config, running as an unprivileged user.

FROM debian:12 AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN rm -rf build \
 && SLUICE_JOBS="$(nproc)" scripts/build.sh build -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=OFF \
 && cd build && ctest --output-on-failure --timeout 600 -j 2

FROM debian:12-slim AS runtime
# Runtime libraries of sluice and sluice-sim (check with: ldd /usr/local/bin/sluice).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libboost-url1.81.0 libssl3 \
      libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin sluice
COPY --from=build /src/build/src/app/sluice /src/build/src/sim/sluice-sim /usr/local/bin/
COPY config/sluice.json /etc/sluice/sluice.json
USER sluice
# 11435: clients (the Ollama API); 11436: admin (/metrics /healthz /readyz /admin/*), keep private.
EXPOSE 11435 11436
ENTRYPOINT ["sluice", "--config", "/etc/sluice/sluice.json", "--listen", "0.0.0.0:11435", "--admin-listen", "0.0.0.0:11436"]
CMD []

# podvisor as a container image, built with podman: `make image` (see
# docs/kubernetes.md). No registry is reachable here, so the base is a Debian 13
# (trixie) minbase root filesystem that scripts/image-base.sh makes with
# debootstrap from the machine's own apt mirror and imports under BASE.
#
# The build stage needs the registry's certificate authority: `make image`
# mounts the machine's /etc/ssl/certs at /run/host-certs for the RUN steps
# (`podman build -v`), so it never becomes part of any layer, and points npm
# and Node at it below. (Not at /etc/ssl/certs: the runtime stage installs
# Debian's ca-certificates, which writes there.)
ARG BASE=localhost/podvisor-base:trixie
# Node's options in the image: a 1 MiB V8 semi-space (the young generation)
# instead of up to 16 MiB takes 9 MiB off the daemon's idle RSS on the host,
# and with the launcher's own saving 85.5 -> 66.8 MiB in the container
# (docs/benchmarks.md#container). The build's warm-up start uses them too:
# V8 rejects a code cache made with other flags.
ARG PODVISOR_NODE_OPTIONS=--max-semi-space-size=1

FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm node-gyp libnode-dev python3 make g++ >/dev/null \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_EXTRA_CA_CERTS=/run/host-certs/ca-certificates.crt \
    npm_config_cafile=/run/host-certs/ca-certificates.crt \
    npm_config_update_notifier=false
WORKDIR /src
# The manifests first, so that a source change keeps the npm install layer.
COPY package.json package-lock.json tsconfig.base.json tsconfig.json ./
COPY packages/core/package.json packages/core/
COPY packages/net-support/package.json packages/net-support/
COPY packages/qemu/package.json packages/qemu/
COPY packages/image-store/package.json packages/image-store/
COPY packages/configdrive/package.json packages/configdrive/
COPY packages/net-nat-bridge/package.json packages/net-nat-bridge/
COPY packages/net-macvtap/package.json packages/net-macvtap/
COPY packages/net-l2-segment/package.json packages/net-l2-segment/
COPY apps/supervisord/package.json apps/supervisord/
COPY test/package.json test/
RUN npm install --no-audit --no-fund
COPY packages packages
COPY apps apps
COPY scripts/bundle-cli.mjs scripts/build-web-console.mjs scripts/
# Here, not above: a build argument would change the cache key of every RUN after it.
ARG PODVISOR_NODE_OPTIONS
RUN npx tsc -b tsconfig.json \
 && npm run --silent build:native -w @podvisor/supervisord \
 && node scripts/build-web-console.mjs \
 && NODE_OPTIONS="$PODVISOR_NODE_OPTIONS" node scripts/bundle-cli.mjs
# Only what runs, laid out as in the repository (the bundle finds the reaper
# addon, the OpenAPI file, the web console and package.json relative to
# itself): the bundle with its warmed code cache, the native addons, and
# better-sqlite3, the one module the bundle leaves external, with the modules
# it requires at run time (bindings, file-uri-to-path).
RUN set -eu; o=/out/opt/podvisor; a=apps/supervisord; \
    mkdir -p $o/$a/dist $o/$a/api $o/$a/native/build/Release $o/node_modules/better-sqlite3/build/Release; \
    cp $a/package.json $o/$a/; cp $a/api/openapi.yaml $o/$a/api/; \
    cp -r $a/dist/bundle $a/dist/web $o/$a/dist/; \
    cp $a/native/build/Release/reaper.node $o/$a/native/build/Release/; \
    cp -r node_modules/better-sqlite3/package.json node_modules/better-sqlite3/lib $o/node_modules/better-sqlite3/; \
    cp node_modules/better-sqlite3/build/Release/better_sqlite3.node $o/node_modules/better-sqlite3/build/Release/; \
    cp -r node_modules/bindings node_modules/file-uri-to-path $o/node_modules/
COPY deploy/image/podvisor deploy/image/podvisor-entrypoint /out/usr/local/bin/

FROM ${BASE}
# Debian packages only: Node, qemu and qemu-img, dnsmasq, nftables and iproute2
# for the network backends, wireguard-go and wireguard-tools for l2-segment, genisoimage for the config drive, util-linux for
# setpriv (children die with podvisor), procps for sysctl, passt, and the CA
# certificates for https image sources. test/e2e/container.e2e.test.ts checks
# that every binary the code can spawn is here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      nodejs qemu-system-x86 qemu-utils dnsmasq-base nftables iproute2 genisoimage util-linux procps passt wireguard-go wireguard-tools ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
COPY --from=build /out/ /
ARG PODVISOR_NODE_OPTIONS
ENV NODE_OPTIONS=${PODVISOR_NODE_OPTIONS}
EXPOSE 5800 5900
# podvisor is PID 1. The container's CMD (a pod's `args`) is extra qemu
# arguments; `bash` or `sh` as the first argument gives a debug shell.
ENTRYPOINT ["/usr/local/bin/podvisor-entrypoint"]
CMD []
# Last, so that a new revision does not rebuild the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="podvisor" \
      org.opencontainers.image.description="Runs one QEMU virtual machine as a Kubernetes pod: a TypeScript PID 1 supervisor" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="debian:trixie (debootstrap --variant=minbase)" \
      org.opencontainers.image.documentation="docs/kubernetes.md"

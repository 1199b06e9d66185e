# podvisor as a container image: the same build and the same Debian packages
# that `make test` uses. It cannot be built on the development machines (there
# is no Docker engine there); CI exercises the same steps through the Makefile.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN npm install --no-audit --no-fund \
 && npx tsc -b tsconfig.json \
 && npm_config_nodedir=/usr/local npm run build:native -w @podvisor/supervisord \
 && node scripts/build-web-console.mjs \
 && node scripts/bundle-cli.mjs \
 && npm prune --omit=dev

FROM node:20-bookworm-slim
# qemu and its tools, dnsmasq and nftables for the network plugins, genisoimage
# for the config drive, util-linux for setpriv (children die with podvisor).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      qemu-system-x86 qemu-utils dnsmasq-base nftables iproute2 genisoimage util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src /opt/podvisor
ENV PODVISOR_IMAGES_DIR=/var/lib/podvisor/images PODVISOR_DISK_DIR=/var/lib/podvisor/disk
VOLUME ["/var/lib/podvisor/images", "/var/lib/podvisor/disk"]
EXPOSE 5800 5900
# podvisor is PID 1; the container's CMD becomes extra qemu arguments.
ENTRYPOINT ["node", "/opt/podvisor/apps/supervisord/dist/bundle/podvisor.cjs", "run", "--"]
CMD []

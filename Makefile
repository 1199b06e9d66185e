# podvisor: `make demo` runs a real VM in a simulated pod; `make test` runs every test.
# Both install what a fresh Debian 12 machine lacks first (apt packages when root,
# npm ci, the build, the test guest), so CI and a new developer need nothing else.

SHELL := /bin/bash
.DEFAULT_GOAL := help

APT_PACKAGES := qemu-system-x86 qemu-utils dnsmasq-base nftables iproute2 genisoimage \
  linux-image-amd64 busybox-static dhcpcd-base syslinux syslinux-common mtools dosfstools cpio kmod fdisk \
  curl socat chromium \
  podman buildah runc catatonit containernetworking-plugins iptables debootstrap \
  wireguard-go wireguard-tools tcpdump passt
STAMPS := .stamps
# The container image (Dockerfile) and the base it is built FROM (scripts/image-base.sh).
IMAGE := localhost/podvisor:latest
IMAGE_BASE := localhost/podvisor-base:trixie
# runc and rlimits podman accepts here (see the file).
PODMAN := CONTAINERS_CONF=$(CURDIR)/deploy/podman/containers.conf podman

.PHONY: help deps apt kubectl npm build guest image example-plugin test-example test test-unit test-int test-e2e demo bench clean

help:
	@echo "make demo   # a real VM in a simulated Calico-style pod, reachable on the pod IP"
	@echo "make test   # install what is missing, build, and run unit, int and e2e tests"
	@echo "make bench  # benchmarks (results: docs/benchmarks.md)"

deps: apt npm

# apt packages: installed when root and missing (CI runs as root on a fresh machine).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "apt: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages (run as root, or: sudo apt-get install $$missing)" >&2; exit 1; \
	  fi; \
	fi

# Install when the lock file changed since the last install (better-sqlite3 builds
# from source: ~80 s). `npm install`, not `npm ci`: the registry reachable here
# serves only this platform's optional packages (rollup/esbuild for other
# platforms answer 404), so no lock file can list them all and `npm ci` refuses
# it; `npm install` keeps the locked versions and skips unreachable optionals.
npm: $(STAMPS)/npm
$(STAMPS)/npm: package-lock.json package.json
	@mkdir -p $(STAMPS)
	npm install --no-audit --no-fund
	@touch $@

# node-gyp gets the headers of the machine's own Node (no download: the network is closed).
build: npm
	npx tsc -b tsconfig.json
	npx tsc -p test/tsconfig.json
	npm_config_nodedir=$$(dirname $$(dirname $$(command -v node))) npm run --silent build:native -w @podvisor/supervisord
	node scripts/build-web-console.mjs
	node scripts/bundle-cli.mjs

guest: apt
	test/guest/build.sh

# localhost/podvisor:latest, built with podman from a Debian 13 base made here
# (no registry is reachable). The build's RUN steps reach npm and apt through
# the host's network and trust the machine's CA bundle, mounted for the build
# only (see the Dockerfile). Layers are cached: with unchanged sources a second
# run reuses them (the base is kept by a stamp in .stamps/).
image: apt
	scripts/image-base.sh $(IMAGE_BASE)
	$(PODMAN) build --network host -v /etc/ssl/certs:/run/host-certs:ro \
	  --build-arg BASE=$(IMAGE_BASE) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  -t $(IMAGE) .

# The third-party plugin example (examples/net-passt, see PLUGINS.md), built the
# way an outside author builds it: against podvisor's packed packages (npm pack),
# installed into its own node_modules (no lock file: the tarballs change with
# every build). Then linked into node_modules, where the built binary finds it by
# name (PODVISOR_PLUGINS=podvisor-net-passt), as /opt/podvisor/node_modules in the image.
EXAMPLE := examples/net-passt
example-plugin: build
	rm -rf $(EXAMPLE)/.packs $(EXAMPLE)/node_modules/@podvisor $(EXAMPLE)/dist
	mkdir -p $(EXAMPLE)/.packs
	npm pack --silent -w @podvisor/core -w @podvisor/net-support --pack-destination $(EXAMPLE)/.packs >/dev/null
	cd $(EXAMPLE) && npm install --no-audit --no-fund --prefer-offline && npm run --silent build
	ln -sfn ../$(EXAMPLE) node_modules/podvisor-net-passt

# Its own test suite (the NetworkBackend contract suite and real passt; needs root).
test-example: apt example-plugin
	cd $(EXAMPLE) && npx vitest run

# kubectl (its built-in kustomize renders deploy/kubernetes in the manifests test)
# is no Debian 12 package: it must be on the machine already.
kubectl:
	@command -v kubectl >/dev/null || { echo "kubectl is missing: the e2e manifests test runs 'kubectl kustomize' (kubectl 1.32 or newer; Debian 12 does not package it)" >&2; exit 1; }

test: deps kubectl build guest image test-example
	@mkdir -p test/.artifacts
	npx vitest run --project unit --project int --project e2e --reporter=default --reporter=json --outputFile.json=test/.artifacts/vitest.json
	@node scripts/test-summary.mjs test/.artifacts/vitest.json

test-unit: npm
	npx vitest run --project unit
test-int: deps
	npx vitest run --project int
test-e2e: deps kubectl build guest image example-plugin
	npx vitest run --project e2e

demo: deps build guest
	test/demo/demo.sh

bench: deps build guest image
	bench/run-all.sh

clean:
	npx tsc -b tsconfig.json --clean || true
	rm -rf $(STAMPS) test/guest/.cache test/.artifacts

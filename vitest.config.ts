import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Unit and integration tests import the packages' sources directly, so they
// need no build. End-to-end tests run the built `podvisor` binary.
const pkg = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const alias = {
  // More specific first: a shorter alias would catch it as a prefix.
  '@podvisor/core/testing': pkg('./packages/core/src/testing.ts'),
  '@podvisor/core/sqlite': pkg('./packages/core/src/sqlite.ts'),
  '@podvisor/core': pkg('./packages/core/src/index.ts'),
  '@podvisor/net-support': pkg('./packages/net-support/src/index.ts'),
  '@podvisor/qemu': pkg('./packages/qemu/src/index.ts'),
  '@podvisor/image-store': pkg('./packages/image-store/src/index.ts'),
  '@podvisor/configdrive': pkg('./packages/configdrive/src/index.ts'),
  '@podvisor/net-nat-bridge': pkg('./packages/net-nat-bridge/src/index.ts'),
  '@podvisor/net-macvtap': pkg('./packages/net-macvtap/src/index.ts'),
  '@podvisor/net-l2-segment': pkg('./packages/net-l2-segment/src/index.ts'),
  '@podvisor/supervisord': pkg('./apps/supervisord/src/index.ts'),
};

export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.unit.test.ts', 'apps/*/src/**/*.unit.test.ts'],
          // Not vitest's 5 s: a test that loads the app's module graph or scans the sources takes
          // ~1 s here, and several times that on a loaded 2-core CI machine. Fast tests stay fast;
          // the bound only ends a hang.
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'int',
          include: ['packages/*/src/**/*.int.test.ts', 'apps/*/src/**/*.int.test.ts'],
          // The network backends' tests run dozens of ip/nft/dnsmasq processes per test: 7-8 s
          // each on a quiet machine, 30-37 s at a load of 17 on the 2 cores. The bound only ends a hang.
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.e2e.test.ts'],
          // A guest boot under TCG took ~50 s at a load of 16 (a test that boots twice, 82 s): the
          // bounds stay well past 2x of that. They only end a hang.
          testTimeout: 300_000,
          hookTimeout: 180_000,
          // Each e2e file boots real qemu under TCG; two cores do not fit more.
          fileParallelism: false,
        },
      },
    ],
  },
});

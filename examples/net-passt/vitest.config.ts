import { defineConfig } from 'vitest/config';

// The plugin's own tests, against the installed (packed) podvisor packages.
export default defineConfig({
  test: { include: ['src/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 60_000 },
});

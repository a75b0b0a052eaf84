import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    alias: {
      'tidepool/testing': fileURLToPath(new URL('./src/testing/index.ts', import.meta.url)),
      tidepool: fileURLToPath(new URL('./src/index.ts', import.meta.url)),
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Database-heavy files share one server on a small machine; a few at a time keeps timings sane.
    maxWorkers: 2,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
})

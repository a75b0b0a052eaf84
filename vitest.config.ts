import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    alias: {
      // Most specific first: 'tidepool-pg' would otherwise also rewrite 'tidepool-pg/testing'.
      'tidepool-pg/testing': fileURLToPath(new URL('./src/testing/index.ts', import.meta.url)),
      'tidepool-pg/fastify': fileURLToPath(new URL('./src/fastify/index.ts', import.meta.url)),
      'tidepool-pg': fileURLToPath(new URL('./src/index.ts', import.meta.url)),
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    // One primary + replica for the whole run; test files take fresh databases on it.
    globalSetup: ['test/setup/global.ts'],
    // Child processes, not threads: tests kill and signal real servers and use process hooks.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
})

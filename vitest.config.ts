import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    alias: {
      // Most specific first: 'tidepool' would otherwise also rewrite 'tidepool/testing'.
      'tidepool/testing': fileURLToPath(new URL('./src/testing/index.ts', import.meta.url)),
      'tidepool/server': fileURLToPath(new URL('./src/server/index.ts', import.meta.url)),
      'tidepool/fastify': fileURLToPath(new URL('./src/fastify/index.ts', import.meta.url)),
      tidepool: fileURLToPath(new URL('./src/index.ts', import.meta.url)),
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

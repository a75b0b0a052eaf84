import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    alias: [
      // Most specific first: 'tidepool-pg' would otherwise also rewrite 'tidepool-pg/testing'.
      { find: /^tidepool-pg\/(testing|fastify|server|kysely|prisma|pg)$/, replacement: fileURLToPath(new URL('./src/$1/index.ts', import.meta.url)) },
      { find: /^tidepool-pg\/([a-z]+)$/, replacement: fileURLToPath(new URL('./src/entries/$1.ts', import.meta.url)) },
      { find: /^tidepool-pg$/, replacement: fileURLToPath(new URL('./src/index.ts', import.meta.url)) },
    ],
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

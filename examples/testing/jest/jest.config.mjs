// Jest runs the TypeScript example as native ESM (node --experimental-vm-modules). The transform
// only strips types (TypeScript's transpileModule), so no ts-jest or Babel is needed.
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../..', import.meta.url))

export default {
  rootDir: root,
  roots: ['<rootDir>/examples/testing/jest'],
  testMatch: ['**/*.test.ts'],
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '\\.ts$': '<rootDir>/examples/testing/jest/strip-types.mjs' },
  moduleNameMapper: {
    // In an application 'tidepool-pg/testing' resolves to the installed package; here, to the source.
    '^tidepool-pg/testing$': '<rootDir>/src/testing/index.ts',
    // ESM sources import './x.js'; the file on disk is './x.ts'.
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  // Jest only sees tests; the code under test (and Tidepool's source) is transformed on import.
  transformIgnorePatterns: ['/node_modules/'],
}

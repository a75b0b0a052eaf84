// Lint rules that catch real bugs (floating promises, misused promises) rather than style.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

// The layers under src/ and what each may import (see ARCHITECTURE.md): arrows point one way, and
// production code never imports the test helpers (src/testing). `util` and `errors` are below all.
const LAYERS = {
  util: [],
  errors: [],
  config: ['errors', 'util'],
  sql: ['errors', 'util'],
  pool: ['config', 'errors', 'util'],
  server: ['config', 'errors', 'util'],
  db: ['config', 'errors', 'pool', 'sql', 'util'],
  migrate: ['config', 'db', 'errors', 'pool', 'sql', 'util'],
  replicas: ['config', 'db', 'errors', 'pool', 'sql', 'util'],
  cache: ['config', 'db', 'errors', 'sql', 'util'],
  safety: ['config', 'db', 'errors', 'sql', 'util'],
  observe: ['cache', 'config', 'db', 'errors', 'pool', 'replicas', 'sql', 'util'],
  ops: ['config', 'db', 'errors', 'observe', 'pool', 'safety', 'server', 'sql', 'util'],
  testing: ['config', 'db', 'errors', 'migrate', 'pool', 'server', 'sql', 'util'],
  fastify: ['config', 'db', 'errors', 'observe', 'pool', 'safety', 'util'],
  dashboard: ['config', 'errors', 'observe', 'util'],
  // The ORMs' engines: each on the pool's Lease, and each also binds to a cluster's roles.
  'pg-compat': ['config', 'db', 'errors', 'pool', 'replicas', 'util'],
  kysely: ['config', 'db', 'errors', 'pool', 'replicas', 'util'],
  prisma: ['config', 'db', 'errors', 'pool', 'replicas', 'util'],
  cli: ['cache', 'config', 'dashboard', 'db', 'errors', 'migrate', 'observe', 'ops', 'pool', 'replicas', 'safety', 'server', 'sql', 'util'],
}

const layerRules = Object.entries(LAYERS).map(([layer, allowed]) => {
  // entries/ holds the package's subpath entry points: above every layer, like src/index.ts.
  const forbidden = [...Object.keys(LAYERS).filter((other) => other !== layer && !allowed.includes(other)), 'entries']
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: `^(\\.\\./)+(${forbidden.join('|')})/`,
              message: `src/${layer} may import only ${allowed.join(', ') || 'nothing else'} (layers in eslint.config.js and ARCHITECTURE.md)`,
            },
            { regex: '^(\\.\\./)+index\\.js$', message: 'import from the layer module, not the package root' },
          ],
        },
      ],
    },
  }
})

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'test-output/**', 'src/dashboard/assets/**', '**/*.tmp.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...layerRules,
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
)

// A process where @opentelemetry/api cannot be found (as in an app that does not install it):
// importing Tidepool and calling instrument() must still work, and cost nothing.
//   argv[2]: the database URL. Prints JSON { value, warnings }.
import { register } from 'node:module'

const hook = `
export async function resolve(specifier, context, next) {
  if (specifier === '@opentelemetry/api' || specifier.startsWith('@opentelemetry/')) {
    const err = new Error('Cannot find package ' + specifier); err.code = 'ERR_MODULE_NOT_FOUND'; throw err
  }
  return next(specifier, context)
}`
register('data:text/javascript,' + encodeURIComponent(hook))

const { Database } = await import('../../src/db/index.js')
const { createConsoleLogger } = await import('../../src/config/index.js')
const warnings: string[] = []
const logger = { ...createConsoleLogger('error'), warn: (m: string) => void warnings.push(m) }
const db = await Database.connect(process.argv[2]!, { logger })
const { instrument } = await import('../../src/observe/index.js')
const off = await instrument(db)
const value = await db.fetchVal<number>('SELECT 40 + 2')
off()
await db.close()
process.stdout.write(JSON.stringify({ value, warnings }) + '\n')

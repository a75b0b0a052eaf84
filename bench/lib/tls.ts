// TLS on the benchmark's own server: a self-signed certificate in its data directory (owned by the
// server's user, key 0600) and `ssl = on`, applied with a reload. As in test/pool/auth-tls.test.ts.
import { execFileSync } from 'node:child_process'
import { chownSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

/** Turn TLS on; false (and why) when openssl is missing. */
export async function enableTls(url: string, dataDir: string): Promise<true | string> {
  const work = mkdtempSync(join(tmpdir(), 'tidepool-bench-tls-'))
  try {
    try {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', join(work, 'server.key'), '-out', join(work, 'server.crt'),
      ], { stdio: 'ignore' })
    } catch {
      return 'openssl is not installed'
    }
    const owner = statSync(dataDir)
    for (const [name, mode] of [['server.crt', 0o644], ['server.key', 0o600]] as const) {
      writeFileSync(join(dataDir, name), readFileSync(join(work, name)), { mode })
      chownSync(join(dataDir, name), owner.uid, owner.gid)
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query("ALTER SYSTEM SET ssl = 'on'")
    await client.query('SELECT pg_reload_conf()')
  } finally {
    await client.end()
  }
  return true
}

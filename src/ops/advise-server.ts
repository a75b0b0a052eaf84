// What `advise` checks about the role the application connects as, and how it learns the server's
// memory for the memory settings. The memory figure comes from the caller when given (the only
// reliable source for a managed server); otherwise from /proc/meminfo and the cgroup limit read
// through pg_read_file, which only a superuser or a member of pg_read_server_files may call.
import type { Database } from '../db/database.js'
import { QueryError } from '../errors/index.js'
import { inUserSchemas } from './catalog.js'
import type { Finding, Step } from './findings.js'

export interface ServerMemory {
  bytes: number | undefined
  /** `given`, `/proc/meminfo`, `cgroup memory.max`, or why it is unknown. */
  source: string
}

/** `MemTotal:  16314520 kB` → bytes. */
export function parseMemInfo(text: string): number | undefined {
  const m = /^MemTotal:\s+(\d+)\s*kB/m.exec(text)
  return m ? Number(m[1]) * 1024 : undefined
}

/**
 * The server's memory: `given` when set; else MemTotal, lowered to the cgroup v2 limit when the
 * server runs in a container with less. Unknown (with the reason) when the role may not read
 * server files or the server is not on Linux.
 */
export async function serverMemory(db: Database, given: number | undefined, timeoutMs = 30_000): Promise<ServerMemory> {
  if (given !== undefined) return { bytes: given, source: 'given' }
  let files: { meminfo: string | null; cgroup: string | null } | null
  try {
    // missing_ok = true: a missing file reads as NULL instead of failing.
    files = await db.fetchOne<{ meminfo: string | null; cgroup: string | null }>(
      `SELECT pg_read_file('/proc/meminfo', 0, 4096, true) AS meminfo, pg_read_file('/sys/fs/cgroup/memory.max', 0, 64, true) AS cgroup`,
      undefined,
      { timeoutMs },
    )
  } catch (err) {
    if (err instanceof QueryError && err.sqlstate === '42501') return { bytes: undefined, source: `${db.pool.config.user} may not read server files (pg_read_file)` }
    throw err
  }
  const total = files?.meminfo ? parseMemInfo(files.meminfo) : undefined
  if (total === undefined) return { bytes: undefined, source: 'the server has no /proc/meminfo (not Linux)' }
  const limit = files?.cgroup && /^\d+\s*$/.test(files.cgroup) ? Number(files.cgroup) : undefined
  return limit !== undefined && limit < total ? { bytes: limit, source: 'cgroup memory.max' } : { bytes: total, source: '/proc/meminfo' }
}

/** The finding that says memory settings were judged without the memory figure. */
export function unknownMemoryFinding(memory: ServerMemory): Finding[] {
  if (memory.bytes !== undefined) return []
  return [
    {
      kind: 'setting',
      severity: 'info',
      object: 'server memory',
      message:
        `the server's memory is unknown (${memory.source}), so memory settings were only compared with PostgreSQL's defaults: ` +
        'pass it (tidepool advise --memory 16GB, adviseDatabase(db, { serverMemoryBytes })) or run advise as a superuser',
      detail: { source: memory.source },
    },
  ]
}

interface RoleFacts {
  role: string
  superuser: boolean
  public_create: boolean
  owns_public: boolean
  owned: string[]
  owned_count: number
}

/**
 * The application's role should be able to do its work and no more: a superuser bypasses every
 * permission and row-level security and can read server files; an owner can ALTER and DROP its
 * tables (and owner-bypassed RLS); CREATE in `public` lets a compromised app plant objects that
 * other roles' unqualified names resolve to.
 */
export function privileges(schemas: string[] | null): Step {
  return async (db, timeoutMs) => {
    const r = (await db.fetchOne<RoleFacts>(
      `SELECT current_user AS role, r.rolsuper AS superuser,
              CASE WHEN to_regnamespace('public') IS NULL THEN false ELSE has_schema_privilege('public', 'CREATE') END AS public_create,
              coalesce((SELECT pg_has_role(n.nspowner, 'USAGE') FROM pg_namespace n WHERE n.nspname = 'public'), false) AS owns_public,
              array(SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'p') AND c.relowner = r.oid AND ${inUserSchemas('n.nspname')} ORDER BY 1 LIMIT 5) AS owned,
              (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p') AND c.relowner = r.oid AND ${inUserSchemas('n.nspname')}) AS owned_count
         FROM pg_roles r WHERE r.rolname = current_user`,
      [schemas],
      { timeoutMs },
    ))!
    const found: Finding[] = []
    if (r.superuser) {
      found.push({
        kind: 'privilege',
        severity: 'warning',
        object: r.role,
        message:
          `the application connects as ${r.role}, a superuser: every permission check and row-level security policy is bypassed, and one injected statement can read server files or drop any database. ` +
          'Connect as a role with only the privileges it needs (CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA …; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA … TO app), and run migrations as another',
        detail: { role: r.role, privilege: 'superuser' },
      })
    }
    if (r.owned_count > 0) {
      found.push({
        kind: 'privilege',
        severity: 'warning',
        object: r.role,
        message:
          `${r.role} owns ${r.owned_count} table${r.owned_count === 1 ? '' : 's'} (${r.owned.join(', ')}${r.owned_count > r.owned.length ? ', …' : ''}): it can ALTER, TRUNCATE and DROP them, and row-level security does not apply to it unless forced. ` +
          'Have a migration role own the schema (ALTER TABLE … OWNER TO migrator) and grant the application only what it uses',
        detail: { role: r.role, privilege: 'owner', tables: r.owned, count: r.owned_count },
      })
    }
    if (r.public_create && !r.superuser) {
      found.push({
        kind: 'privilege',
        severity: 'warning',
        object: r.role,
        message:
          `${r.role} can create objects in schema public${r.owns_public ? ' (it owns the schema)' : ''}: a compromised application can plant tables or functions there that other roles' unqualified names resolve to. ` +
          (r.owns_public ? 'Give the schema to another role (ALTER SCHEMA public OWNER TO migrator)' : `REVOKE CREATE ON SCHEMA public FROM PUBLIC, ${r.role}`),
        detail: { role: r.role, privilege: 'create-in-public', ownsSchema: r.owns_public },
      })
    }
    return found
  }
}


// Tidepool's errors as Prisma's engine understands them. Prisma recognises a driver adapter error
// by its name, 'DriverAdapterError', and reads the MappedError in its `cause`; from the kind it
// makes the user-facing error (UniqueConstraintViolation → P2002, ForeignKey… → P2003,
// TransactionWriteConflict → P2034, …). Errors with no Prisma kind (PoolTimeoutError with its
// figures, a decode error, a misuse) are thrown as they are, and reach the application unchanged.
import type { MappedError } from '@prisma/driver-adapter-utils'
import { ConnectError, ConnectionLostError, LeaseError, QueryError, TidepoolError } from '../errors/index.js'

/** Prisma's own error payload, with the server's code and message as adapter-pg gives them. */
export type PrismaErrorPayload = MappedError & { originalCode?: string; originalMessage?: string }

/**
 * A Tidepool error translated for Prisma: `cause` is the payload Prisma reads, `error` the
 * Tidepool error it came from (with its SQLSTATE, fields and SQL text).
 */
export class PrismaAdapterError extends TidepoolError {
  declare readonly cause: PrismaErrorPayload
  readonly error: TidepoolError | undefined
  constructor(payload: PrismaErrorPayload, error?: TidepoolError) {
    super(error?.code ?? 'QUERY', error?.message ?? ('message' in payload ? String(payload.message) : payload.kind), { cause: payload })
    // The name Prisma's isDriverAdapterError() looks for.
    this.name = 'DriverAdapterError'
    this.error = error
  }
}

/** Field names from a detail such as `Key (tenant_id, email)=(…) already exists.` (the values are never kept). */
function keyFields(detail: string | undefined): string[] | undefined {
  const list = detail === undefined ? undefined : /Key \(([^)]+)\)/.exec(detail)?.[1]
  return list?.split(', ')
}

/** The first double-quoted name in a server message (`relation "users" does not exist`). */
const quoted = (message: string) => /"((?:[^"]|"")*)"/.exec(message)?.[1]?.replaceAll('""', '"')

/** The server's own message (Tidepool's adds the SQLSTATE and the statement; Prisma shows its own context). */
function serverMessage(e: QueryError): string {
  const cause = e.cause as { message?: unknown } | undefined
  return typeof cause?.message === 'string' ? cause.message : e.message
}

function fromServer(e: QueryError): MappedError {
  const message = serverMessage(e)
  switch (e.sqlstate) {
    case '22001':
      return { kind: 'LengthMismatch', column: e.column }
    case '22003':
      return { kind: 'ValueOutOfRange', cause: message }
    case '22P02':
      return { kind: 'InvalidInputValue', message }
    case '23505': {
      const fields = keyFields(e.detail)
      const constraint = e.constraint !== undefined ? { index: e.constraint } : fields !== undefined ? { fields } : undefined
      let table = e.table
      // Older servers leave the table out: a default constraint name is `<table>_<fields>_key`.
      if (table === undefined && fields !== undefined && e.constraint?.endsWith(`_${fields.join('_')}_key`)) table = e.constraint.slice(0, -(fields.join('_').length + 5))
      return { kind: 'UniqueConstraintViolation', constraint, table }
    }
    case '23502': {
      const fields = e.column !== undefined ? [e.column] : keyFields(e.detail)
      return { kind: 'NullConstraintViolation', constraint: fields !== undefined ? { fields } : undefined }
    }
    case '23503':
    case '23001': {
      const constraint = e.column !== undefined ? { fields: [e.column] } : e.constraint !== undefined ? { index: e.constraint } : undefined
      return { kind: e.sqlstate === '23503' ? 'ForeignKeyConstraintViolation' : 'RestrictViolation', constraint }
    }
    case '3D000':
      return { kind: 'DatabaseDoesNotExist', db: quoted(message) }
    case '28000':
      return { kind: 'DatabaseAccessDenied', db: /database "([^"]*)"/.exec(message)?.[1] }
    case '28P01':
      return { kind: 'AuthenticationFailed', user: quoted(message) }
    case '40001':
    case '40P01':
      return { kind: 'TransactionWriteConflict' }
    case '42P01':
      return { kind: 'TableDoesNotExist', table: quoted(message) }
    case '42703':
      return { kind: 'ColumnNotFound', column: /^column (.+) does not exist$/.exec(message)?.[1]?.replace(/"((?:""|[^"])*)"/g, (_, id: string) => id.replaceAll('""', '"')) }
    case '42P04':
      return { kind: 'DatabaseAlreadyExists', db: quoted(message) }
    case '53300':
      return { kind: 'TooManyConnections', cause: message }
    default:
      return { kind: 'postgres', code: e.sqlstate, severity: e.severity ?? 'ERROR', message, detail: e.detail, column: e.column, hint: e.hint }
  }
}

function fromConnect(e: ConnectError): MappedError | undefined {
  const at = e.target.lastIndexOf('@')
  const hostPort = /^(.*):(\d+)\//.exec(e.target.slice(at + 1))
  const user = at > 0 ? e.target.slice(0, at) : undefined
  const db = e.target.slice(e.target.lastIndexOf('/') + 1) || undefined
  switch (e.reason) {
    case 'refused':
    case 'dns':
    case 'timeout':
      return { kind: 'DatabaseNotReachable', host: hostPort?.[1], port: hostPort ? Number(hostPort[2]) : undefined }
    case 'auth':
      return { kind: 'AuthenticationFailed', user }
    case 'database-missing':
      return { kind: 'DatabaseDoesNotExist', db }
    case 'too-many-connections':
      return { kind: 'TooManyConnections', cause: e.message }
    case 'tls':
      return { kind: 'TlsConnectionError', reason: e.message }
    default:
      return undefined
  }
}

/** What to throw to Prisma for an error from the pool or a statement. */
export function toPrismaError(err: unknown): unknown {
  if (err instanceof PrismaAdapterError) return err
  let payload: PrismaErrorPayload | undefined
  if (err instanceof QueryError) payload = { ...fromServer(err), originalCode: err.sqlstate, originalMessage: serverMessage(err) }
  else if (err instanceof ConnectError) {
    const mapped = fromConnect(err)
    if (mapped) payload = err.sqlstate === undefined ? mapped : { ...mapped, originalCode: err.sqlstate, originalMessage: err.message }
  } else if (err instanceof ConnectionLostError) payload = { kind: 'ConnectionClosed' }
  else if (err instanceof LeaseError) payload = { kind: 'TransactionAlreadyClosed', cause: err.message }
  return payload === undefined ? err : new PrismaAdapterError(payload, err as TidepoolError)
}

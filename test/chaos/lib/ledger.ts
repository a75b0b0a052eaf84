// A ledger of acknowledged writes: every INSERT the database acknowledged is remembered here and
// must be found afterwards. A write whose caller got an error is either definitely not applied
// (the statement never reached the server) or of unknown outcome (the connection died while it
// ran); only the second may show up in the table.
import { ConnectError, PoolTimeoutError } from '../../../src/errors/index.js'
import { type Database } from '../../../src/db/index.js'

/** What the ledger needs of a Database (a Cluster's `db` will do). */
export type LedgerDb = Pick<Database, 'execute' | 'fetchAll' | 'transaction'>

export interface LedgerCheck {
  acknowledged: number
  /** Acknowledged writes missing from the table: must be 0. */
  lost: number[]
  /** Failed writes found committed anyway (outcome unknown to the caller, e.g. ConnectionLostError). */
  committedDespiteError: number
  /** Writes refused before reaching the server (ConnectError, PoolTimeoutError) yet found committed: must be 0. */
  phantom: number[]
}

export class Ledger {
  private next = 1
  private readonly acked = new Set<number>()
  private readonly failed = new Map<number, Error>()

  constructor(
    private db: LedgerDb,
    private readonly table = 'chaos_ledger',
  ) {}

  async create(): Promise<void> {
    await this.db.execute(`CREATE TABLE IF NOT EXISTS ${this.table} (id bigint PRIMARY KEY, worker int NOT NULL, at timestamptz NOT NULL DEFAULT now())`)
  }

  /** Write and check through another Database from now on (a new pool, another driver). */
  use(db: LedgerDb): void {
    this.db = db
  }

  get acknowledged(): number {
    return this.acked.size
  }

  /** One write, alone or in a transaction (whose COMMIT may die in flight): resolves when acknowledged. */
  async write(worker: number, timeoutMs: number, mode: 'statement' | 'transaction' = 'statement'): Promise<void> {
    const id = this.next++
    const insert = `INSERT INTO ${this.table} (id, worker) VALUES ($1, $2)`
    try {
      if (mode === 'statement') await this.db.execute(insert, [id, worker], { timeoutMs })
      else await this.db.transaction((tx) => tx.execute(insert, [id, worker], { timeoutMs }), { retries: 0 })
      this.acked.add(id)
    } catch (err) {
      this.failed.set(id, err as Error)
      throw err
    }
  }

  async check(db: LedgerDb = this.db): Promise<LedgerCheck> {
    const present = new Set((await db.fetchAll<{ id: number }>(`SELECT id FROM ${this.table}`)).map((r) => Number(r.id)))
    const lost = [...this.acked].filter((id) => !present.has(id))
    let committedDespiteError = 0
    const phantom: number[] = []
    for (const [id, err] of this.failed) {
      if (!present.has(id)) continue
      committedDespiteError++
      if (err instanceof ConnectError || err instanceof PoolTimeoutError) phantom.push(id)
    }
    return { acknowledged: this.acked.size, lost, committedDespiteError, phantom }
  }
}

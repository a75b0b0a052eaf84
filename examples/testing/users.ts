// The code under test in the testing examples: it takes a Database and knows nothing of tests.
import type { Database } from 'tidepool-pg'

export async function signUp(db: Database, email: string): Promise<number> {
  return db.transaction(async (tx) => {
    const id = (await tx.fetchVal<string>('INSERT INTO {{tables.users}} (email) VALUES ($1) RETURNING id', [email]))!
    await tx.execute('INSERT INTO {{tables.orders}} (user_id, item) VALUES ($1, $2)', [id, 'welcome pack'])
    return Number(id)
  })
}

export async function countUsers(db: Database): Promise<number> {
  return Number(await db.fetchVal('SELECT count(*) FROM {{tables.users}}'))
}

// tidepool/safety: doing things once and one at a time: idempotency keys stored in PostgreSQL
// (atomic with the work), advisory locks, row locks and job claiming, fenced Redis locks.
export * from '../safety/index.js'

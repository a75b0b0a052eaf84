// Imported first by types-tz.test.ts, so the process time zone is set before the modules under
// test load (imports are evaluated in order; an assignment in the test file itself would run
// after all of them). Node re-reads TZ when it changes at runtime.
process.env.TZ = 'America/Los_Angeles'

// pg's own bind-value conversion (Date, arrays, Buffer, JSON, toPostgres), reused so both drivers
// send exactly the same text for the same value.
declare module 'pg/lib/utils.js' {
  const utils: { prepareValue(value: unknown): string | Buffer | null }
  export default utils
}

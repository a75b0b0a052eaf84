// Unix-domain sockets, as libpq names them: a host that starts with '/' is the directory holding
// the server's socket file `.s.PGSQL.<port>`.

/** The longest socket path the kernel takes (sun_path is 108 bytes with the trailing NUL on Linux). */
export const MAX_SOCKET_PATH_BYTES = 107

/** Whether `host` names a Unix-socket directory rather than a TCP host. */
export function isSocketDir(host: string): boolean {
  return host.startsWith('/')
}

/** `<dir>/.s.PGSQL.<port>`, the file a server listening in `dir` on `port` creates. */
export function socketPath(dir: string, port: number): string {
  return `${dir.replace(/\/+$/, '')}/.s.PGSQL.${port}`
}

/** Why `dir` cannot be a socket directory for `port`, or undefined when it can. */
export function socketDirProblem(dir: string, port: number): string | undefined {
  if (dir.includes('\0')) return 'a socket directory must not contain a NUL character'
  const path = socketPath(dir, port)
  const bytes = Buffer.byteLength(path)
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    return `the socket path ${JSON.stringify(path)} is ${bytes} bytes, more than the ${MAX_SOCKET_PATH_BYTES} the system allows; use a shorter directory`
  }
  return undefined
}

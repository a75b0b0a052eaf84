// Maps our sslmode vocabulary (libpq's) onto Node's TLS options.
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from 'node:tls'
import type { ResolvedSsl } from './schema.js'

/** Node TLS options for one host, or false for a plaintext connection. */
export function tlsOptionsFor(ssl: ResolvedSsl, host: string): ConnectionOptions | false {
  if (ssl.mode === 'disable') return false
  const options: ConnectionOptions = {
    ca: ssl.ca,
    cert: ssl.cert,
    key: ssl.key,
    passphrase: ssl.passphrase,
    servername: ssl.servername ?? (isIp(host) ? undefined : host),
  }
  switch (ssl.mode) {
    case 'require':
      // Encrypted, but like libpq's require: the certificate is not checked.
      options.rejectUnauthorized = false
      break
    case 'verify-ca':
      // The chain must lead to a trusted CA; the host name is not compared.
      options.rejectUnauthorized = true
      options.checkServerIdentity = () => undefined
      break
    case 'verify-full':
      options.rejectUnauthorized = true
      options.checkServerIdentity = (name: string, cert: PeerCertificate) => checkServerIdentity(ssl.servername ?? name, cert)
      break
  }
  return options
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':')
}

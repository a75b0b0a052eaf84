// Maps our sslmode vocabulary (libpq's) onto Node's TLS options.
import { isIP } from 'node:net'
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from 'node:tls'
import type { ResolvedSsl } from './schema.js'
import { isSocketDir } from './socket.js'

/** Node TLS options for one host, or false for a plaintext connection. */
export function tlsOptionsFor(ssl: ResolvedSsl, host: string): ConnectionOptions | false {
  // libpq ignores sslmode over a Unix-domain socket (the server never offers TLS there).
  if (ssl.mode === 'disable' || isSocketDir(host)) return false
  // The name the certificate must carry: the host exactly as given (an IP address is matched
  // against the IP SANs, a DNS name against the DNS SANs), unless `servername` says otherwise.
  const expected = ssl.servername ?? host
  const options: ConnectionOptions = {
    ca: ssl.ca,
    cert: ssl.cert,
    key: ssl.key,
    passphrase: ssl.passphrase,
    // SNI carries DNS names only (RFC 6066 §3). Without a servername Node checks the certificate
    // against 'localhost', which is why verify-full below never relies on the name Node passes.
    servername: ssl.servername ?? (isIP(host) ? undefined : host),
  }
  const verifyChainOnly = () => {
    options.rejectUnauthorized = true
    options.checkServerIdentity = () => undefined
  }
  switch (ssl.mode) {
    case 'require':
      // Like libpq: encrypted without checks, unless a root CA is given, which makes it verify-ca.
      if (ssl.ca !== undefined) verifyChainOnly()
      else options.rejectUnauthorized = false
      break
    case 'verify-ca':
      // The chain must lead to a trusted CA; the host name is not compared.
      verifyChainOnly()
      break
    case 'verify-full':
      // Node's rules are libpq's for a DNS name (DNS SANs, the CN only when there is no DNS SAN)
      // and stricter for an IP address (IP SANs only; libpq also tries the CN and DNS SANs).
      options.rejectUnauthorized = true
      options.checkServerIdentity = (_name: string, cert: PeerCertificate) => checkServerIdentity(expected, cert)
      break
  }
  return options
}

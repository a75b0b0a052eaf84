// The startup exchange: startup packet, authentication (trust, cleartext, md5, SCRAM-SHA-256),
// then ParameterStatus and BackendKeyData up to the first ReadyForQuery.
import type {
  AuthenticationMD5Password,
  BackendKeyDataMessage,
  BackendMessage,
  NoticeMessage,
  ParameterStatusMessage,
  ReadyForQueryMessage,
} from 'pg-protocol/dist/messages.js'
import type { TransactionStatus } from '../session.js'
import type { FrameWriter } from './frames.js'
import { md5Response, SCRAM_MECHANISM, ScramClient } from './scram.js'

export interface WireStartup {
  user: string
  password: string | undefined
  /** Startup parameters: user, database, application_name, options, statement_timeout, … */
  params: Record<string, string>
}

export interface StartedSession {
  pid: number
  secretKey: number
  status: TransactionStatus
  params: Map<string, string>
}

export interface AuthChannel {
  write(data: Buffer): void
  /** Route the server's messages to `handler` until the exchange is over. */
  receive(handler: (msg: BackendMessage) => void): void
  frames: FrameWriter
  notice(msg: NoticeMessage): void
}

export function authenticate(options: WireStartup, channel: AuthChannel): Promise<StartedSession> {
  return new Promise<StartedSession>((resolve, reject) => {
    const started: StartedSession = { pid: 0, secretKey: 0, status: 'I', params: new Map() }
    const { frames } = channel
    let scram: ScramClient | undefined
    const password = (): string => {
      if (options.password !== undefined) return options.password
      // Found by the client, so no SQLSTATE (as libpq's "no password supplied" and pg's SASL
      // error); classifyConnectError files it under 'auth' by its words.
      throw new Error('the server asks for a password and none was configured; set password (or PGPASSWORD)')
    }
    channel.receive((msg) => {
      try {
        switch (msg.name) {
          case 'authenticationOk':
            return
          case 'authenticationCleartextPassword':
            return channel.write(frames.password(password()).take())
          case 'authenticationMD5Password':
            return channel.write(frames.password(md5Response(options.user, password(), (msg as AuthenticationMD5Password).salt)).take())
          case 'authenticationSASL': {
            const mechanisms = (msg as unknown as { mechanisms: string[] }).mechanisms
            if (!mechanisms.includes(SCRAM_MECHANISM)) throw new Error(`the server offers SASL ${mechanisms.join(', ')}; only ${SCRAM_MECHANISM} is supported`)
            scram = new ScramClient(password())
            return channel.write(frames.saslInitialResponse(SCRAM_MECHANISM, scram.initialResponse()).take())
          }
          case 'authenticationSASLContinue':
            if (!scram) throw new Error('SCRAM: SASLContinue before SASL started')
            scram.respond((msg as unknown as { data: string }).data).then((final) => channel.write(frames.saslResponse(final).take()), reject)
            return
          case 'authenticationSASLFinal':
            if (!scram) throw new Error('SCRAM: SASLFinal before SASL started')
            return scram.verify((msg as unknown as { data: string }).data)
          case 'backendKeyData':
            started.pid = (msg as BackendKeyDataMessage).processID
            started.secretKey = (msg as BackendKeyDataMessage).secretKey
            return
          case 'parameterStatus':
            started.params.set((msg as ParameterStatusMessage).parameterName, (msg as ParameterStatusMessage).parameterValue)
            return
          case 'notice':
            return channel.notice(msg as NoticeMessage)
          case 'error':
            return reject(msg as unknown as Error)
          case 'readyForQuery':
            started.status = (msg as ReadyForQueryMessage).status as TransactionStatus
            return resolve(started)
          default:
            throw new Error(`unexpected ${msg.name} message during startup`)
        }
      } catch (err) {
        reject(err as Error)
      }
    })
    channel.write(frames.startup(options.params).take())
  })
}

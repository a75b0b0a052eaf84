// A second application process driven by JSON lines (see test/db/notify-peer.fixture.ts).
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'

export interface Peer {
  call<T = unknown>(op: object): Promise<T>
  /** Every `{ notification }` line the peer printed, in order. */
  notifications: { channel: string; payload: string; processId: number }[]
  close(): Promise<void>
}

export async function startPeer(fixture: string, args: object): Promise<Peer> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, JSON.stringify(args)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  const notifications: Peer['notifications'] = []
  let seq = 0
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const reply = JSON.parse(line) as { id?: number; value?: unknown; error?: string; notification?: Peer['notifications'][number] }
    if (reply.notification) return void notifications.push(reply.notification)
    const waiter = pending.get(reply.id!)
    pending.delete(reply.id!)
    if (reply.error !== undefined) waiter?.reject(new Error(reply.error))
    else waiter?.resolve(reply.value)
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.once('exit', () => {
    for (const w of pending.values()) w.reject(new Error('peer process exited'))
  })
  await new Promise<void>((resolve, reject) => {
    pending.set(0, { resolve: () => resolve(), reject })
  })
  return {
    notifications,
    call: <T,>(op: object) =>
      new Promise<T>((resolve, reject) => {
        const id = ++seq
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
        child.stdin!.write(JSON.stringify({ id, ...op }) + '\n')
      }),
    close: async () => {
      child.stdin!.end()
      await exited
    },
  }
}

// Live progress on stderr: on a terminal one status line redrawn in place (throttled), with
// finished items printed above it; elsewhere (CI logs, pipes) only the finished-item lines.
import type { Io } from './output.js'

const REDRAW_MS = 100

export class Progress {
  private shown = ''
  private lastDraw = 0

  constructor(
    private readonly io: Io,
    /** false for --json: nothing is printed. */
    private readonly enabled = true,
  ) {}

  /** Replace the status line (terminals only). */
  status(text: string, force = false): void {
    if (!this.enabled || !this.io.isTTY) return
    const now = performance.now()
    if (!force && now - this.lastDraw < REDRAW_MS) return
    this.lastDraw = now
    this.io.err(`\r\x1b[2K${text}`)
    this.shown = text
  }

  /** Print a finished line above the status line. */
  line(text: string): void {
    if (!this.enabled) return
    if (this.shown) this.io.err('\r\x1b[2K')
    this.io.err(text + '\n')
    if (this.shown) this.io.err(this.shown)
  }

  /** Clear the status line; call before printing the summary or an error. */
  end(): void {
    if (this.shown) this.io.err('\r\x1b[2K')
    this.shown = ''
  }
}

/** `[#########---------------]` */
export function bar(done: number, total: number, width = 24): string {
  const filled = total === 0 ? width : Math.round((done / total) * width)
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`
}

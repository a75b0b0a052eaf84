// Temporary migrations folders for tests, removed after the file's tests.
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'

export interface MigrationsFolder {
  path: string
  write(name: string, sql: string): void
  remove(name: string): void
}

const folders: string[] = []
let cleanupRegistered = false

/** A new folder holding `files` (name → SQL). */
export function migrationsFolder(files: Record<string, string> = {}): MigrationsFolder {
  if (!cleanupRegistered) {
    cleanupRegistered = true
    afterAll(() => {
      for (const dir of folders.splice(0)) rmSync(dir, { recursive: true, force: true })
    })
  }
  const path = mkdtempSync(join(tmpdir(), 'tidepool-migrations-'))
  folders.push(path)
  const folder: MigrationsFolder = {
    path,
    write: (name, sql) => writeFileSync(join(path, name), sql),
    remove: (name) => unlinkSync(join(path, name)),
  }
  for (const [name, sql] of Object.entries(files)) folder.write(name, sql)
  return folder
}

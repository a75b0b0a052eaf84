// A real generated Prisma 7 client for the adapter tests: `prisma generate` (the `prisma-client`
// generator, query compiler in WASM shipped in @prisma/client) runs in the test's setup, into
// test-output/ (gitignored), never committed.
//
// Offline, the CLI works for `generate` only. On start it makes sure the native schema engine is
// downloaded (from binaries.prisma.sh), which fails without internet although generate never runs
// it; pointing PRISMA_SCHEMA_ENGINE_BINARY at any existing file skips the download. `migrate`,
// `db push` and `migrate diff` do run the schema engine, which no npm package ships for Linux, so
// the tables are created with plain SQL (the DDL `prisma migrate diff` would print).
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const root = fileURLToPath(new URL('../..', import.meta.url))

export const PRISMA_SCHEMA = `
generator client {
  provider = "prisma-client"
  output   = "./client"
  moduleFormat = "esm"
}

datasource db {
  provider = "postgresql"
}

model User {
  id        Int      @id @default(autoincrement())
  email     String   @unique
  name      String?
  balance   Decimal  @default(0) @db.Decimal(12, 2)
  visits    BigInt   @default(0)
  tags      String[]
  profile   Json?
  avatar    Bytes?
  birthday  DateTime? @db.Date
  createdAt DateTime @default(now()) @db.Timestamptz(6)
  posts     Post[]
}

model Post {
  id        Int     @id @default(autoincrement())
  title     String
  published Boolean @default(false)
  authorId  Int
  author    User    @relation(fields: [authorId], references: [id])
}
`

/** The tables of PRISMA_SCHEMA, as \`prisma migrate diff --from-empty --to-schema\` would write them. */
export const PRISMA_DDL = `
CREATE TABLE "User" (
  "id" SERIAL NOT NULL,
  "email" TEXT NOT NULL,
  "name" TEXT,
  "balance" DECIMAL(12,2) NOT NULL DEFAULT 0,
  "visits" BIGINT NOT NULL DEFAULT 0,
  "tags" TEXT[],
  "profile" JSONB,
  "avatar" BYTEA,
  "birthday" DATE,
  "createdAt" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Post" (
  "id" SERIAL NOT NULL,
  "title" TEXT NOT NULL,
  "published" BOOLEAN NOT NULL DEFAULT false,
  "authorId" INTEGER NOT NULL,
  CONSTRAINT "Post_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
ALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
`

/** The generated module's PrismaClient constructor (typed loosely: the client is generated at run time). */
export type GeneratedPrismaClient = new (options: { adapter: unknown; transactionOptions?: Record<string, unknown> }) => any

/** Run the Prisma CLI offline; resolves to its output, rejects with it. */
export async function prismaCli(args: string[], cwd = root): Promise<{ stdout: string; stderr: string }> {
  const cli = createRequire(join(root, 'package.json')).resolve('prisma/build/index.js')
  return promisify(execFile)(process.execPath, [cli, ...args], {
    cwd,
    env: { ...process.env, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1', PRISMA_SCHEMA_ENGINE_BINARY: process.execPath },
    timeout: 120_000,
  })
}

const generated = new Map<string, Promise<GeneratedPrismaClient>>()

/** Generate the client for PRISMA_SCHEMA into test-output/prisma-<name>/ (once per process) and import it. */
export function generatePrismaClient(name: string): Promise<GeneratedPrismaClient> {
  let client = generated.get(name)
  if (client === undefined) generated.set(name, (client = generate(name)))
  return client
}

async function generate(name: string): Promise<GeneratedPrismaClient> {
  const dir = join(root, 'test-output', `prisma-${name}`)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'schema.prisma'), PRISMA_SCHEMA)
  await prismaCli(['generate', '--schema', join(dir, 'schema.prisma')])
  const mod = (await import(join(dir, 'client', 'client.ts'))) as { PrismaClient: GeneratedPrismaClient }
  return mod.PrismaClient
}

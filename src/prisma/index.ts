// tidepool/prisma: a Prisma 7 driver adapter on Tidepool's pool.
export { PrismaTidepool, PrismaTidepoolAdapter, PrismaTidepoolTransaction, ADAPTER_NAME, type PrismaTidepoolOptions } from './adapter.js'
export { PrismaAdapterError, toPrismaError, type PrismaErrorPayload } from './errors.js'
export { prismaTypes, columnTypeOf, toBindValue } from './conversion.js'
export { prismaClusterAdapters, PrismaReplicaAdapter } from './replicas.js'

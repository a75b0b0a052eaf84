// MikroORM 6's `replicas` on a replicas Cluster. MikroORM sends writes, transactions and flushes
// to its main connection and, with `preferReadReplicas` (its default), reads to a random entry of
// `replicas`, blind to lag. Here the main connection runs on the cluster's 'primary' handle and
// the one replica entry on its 'replica' handle (see clusterPgPool), so a read after a write in
// the same `cluster.session()` is never stale.
//
// Why plain driverOptions and not a Knex instance (the single-pool route in the README): MikroORM
// reuses a Knex instance given in the global driverOptions for every connection, replicas
// included. With plain options it builds one Knex per connection, merging the global
// driverOptions with the replica entry's own; `connection: false` drops the connection settings
// MikroORM adds (Knex refuses them next to `connectionPool`). MikroORM copies replica entries with
// a clone that keeps EventEmitters, so the PgPool objects themselves reach Knex.
import type { Cluster } from '../replicas/index.js'
import { clusterPgPool } from './cluster.js'
import { textTemporalTypes } from './index.js'
import type { PgPool } from './pool.js'

/** The part of MikroORM's options this sets: spread it into `MikroORM.init({ … })`. */
export interface MikroOrmClusterOptions {
  dbName: string
  /** MikroORM would otherwise open a connection of its own to create the database. */
  ensureDatabase: false
  preferReadReplicas: true
  driverOptions: { connection: false; connectionPool: PgPool }
  replicas: { name: string; driverOptions: { connectionPool: PgPool } }[]
}

/**
 * MikroORM 6.6 options on `cluster` (with `@mikro-orm/postgresql` and Knex ≥ 3.3): writes through
 * the cluster's primary handle, reads through its replica handle. Both parse results as MikroORM
 * asks pg to (textTemporalTypes). `orm.close()` leaves the cluster open.
 */
export function mikroOrmClusterOptions(cluster: Cluster): MikroOrmClusterOptions {
  const primary = clusterPgPool(cluster, 'primary')
  const replica = clusterPgPool(cluster, 'replica')
  primary.types = replica.types = textTemporalTypes
  return {
    dbName: cluster.pools().primary.config.database,
    ensureDatabase: false,
    preferReadReplicas: true,
    driverOptions: { connection: false, connectionPool: primary },
    replicas: [{ name: 'tidepool-replica', driverOptions: { connectionPool: replica } }],
  }
}

// Observability: slow-query log, per-statement statistics, N+1 detection, Prometheus metrics,
// health and readiness, the pool-size advisor, and the dashboard snapshot.
export { Observer, type ObserverOptions, type ObserverSnapshot } from './observer.js'
export type { MetricsSource, MetricFamily, ValueSample, HistogramSample, Labels, HealthCheck, HealthStatus, ComponentHealth } from './types.js'
export { renderExposition, PROMETHEUS_CONTENT_TYPE } from './exposition.js'
export { publishToPromRegistry, type PromRegistry } from './prom-client.js'
export { CounterVec, HistogramVec, QUERY_SECONDS_BUCKETS, ACQUIRE_SECONDS_BUCKETS } from './histogram.js'
export { runHealthChecks, poolCheck, type HealthReport, type ComponentReport, type ReadinessOptions } from './health.js'
export { RequestScope, runInScope, currentScope } from './scope.js'
export { StatementStatistics, type StatementStats, type StatementOrder } from './statements.js'
export { SlowQueryLog, type SlowQuery, type SlowQueryOptions } from './slow-log.js'
export { NPlusOneDetector, type NPlusOneWarning, type NPlusOneOptions } from './n-plus-one.js'
export { advisePoolSize, DemandSampler, type PoolSizeAdvice, type PoolSizeAdviceOptions } from './advisor.js'
export { serverStatements, type ServerStatement, type ServerStatements, type ServerStatementOrder, type ServerStatementOptions } from './pg-stat-statements.js'

export * from './schema.js'
export { resolveConfig, parseDatabaseUrl, configErrorFromZod, describeZodIssues, type ConfigSource, type ParsedUrl } from './resolve.js'
export { describeTarget, redactUrl, redactConfig, scrubSecrets } from './redact.js'
export { tlsOptionsFor } from './tls.js'
export { createConsoleLogger, defaultLogger, silentLogger, type Logger, type LogFields, type LogLevel } from './logger.js'
export {
  CONFIG_FILE_NAMES,
  defineConfig,
  findConfigFile,
  readConfigFile,
  loadConfigFile,
  configFileProblems,
  splitConfigFile,
  fileSectionsSchema,
  type FileSections,
  type TidepoolConfigFile,
  type LoadConfigOptions,
  type LoadedConfigFile,
} from './file.js'
export { environmentName, substituteVariables, selectEnvironment } from './environments.js'
export { suggestPoolSize, type SuggestPoolSizeOptions, type PoolSizeSuggestion } from './sizing.js'

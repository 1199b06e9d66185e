/**
 * @podvisor/core/sqlite: the event log as a SQLite file. A separate entry
 * because it loads better-sqlite3, a native module: the daemon imports it, a
 * plugin that imports `@podvisor/core` never does.
 */
export { SqliteEventStore, EVENT_STORE_SCHEMA_VERSION } from './sqlite-event-store.js';
export type { SqliteEventStoreOptions } from './sqlite-event-store.js';

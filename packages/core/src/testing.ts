/**
 * @podvisor/core/testing: contract suites that every implementation of a port
 * must pass, for podvisor's own adapters and for plugin authors. Imports vitest,
 * so it is a separate entry that the daemon never loads.
 */
export { describeEventStoreContract } from './event-store-contract.js';
export type { EventStoreContractSubject } from './event-store-contract.js';
export { describeNetworkBackendContract } from './network-backend-contract.js';
export type { NetworkBackendContractSubject } from './network-backend-contract.js';
export { describeImageSourceContract } from './image-source-contract.js';
export type { ImageSourceContractSubject } from './image-source-contract.js';
export { describeConfigDriveContract } from './config-drive-contract.js';
export type { ConfigDriveContractSubject } from './config-drive-contract.js';
export { billionLaughsYaml } from './billion-laughs.js';
export { ManualClock } from './manual-clock.js';

/**
 * @podvisor/supervisord: the composition root and the `podvisor` CLI. Its
 * public entry exports what tests and embedders need to build the app.
 */
export { buildAppContainer } from './app-container.js';
export type { AppContainer, AppContainerOptions } from './app-container.js';
export { resolveConfig } from './config/load-config.js';
export type { PodvisorConfig, ConfigInputs } from './config/load-config.js';
export { FIELDS } from './config/config-fields.js';
export { BUILT_IN_PLUGINS } from './built-in-plugins.js';
export { formatEvent } from './commands/events-command.js';
export { spawnableBinaries } from './preflight/preflight.js';

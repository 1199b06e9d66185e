/**
 * @podvisor/configdrive: the cloud-init config drive. It turns the mounted
 * user-data and meta-data (and an optional network-config) into an ISO the
 * guest reads at boot: the OpenStack `config-2` drive that Berth wrote, or a
 * NoCloud `cidata` seed.
 */
import { configDrivePlugin } from './config-drive-module.js';

export {
  CONFIG_DRIVE_FORMATS,
  CONFIG_DRIVE_MAX_SOURCE_BYTES,
  CONFIG_DRIVE_VOLUME_LABELS,
  OPENSTACK_METADATA_VERSION,
  checkSourceSize,
  isGenisoimageFormat,
  planConfigDrive,
} from './config-drive-layout.js';
export type {
  ConfigDriveFile,
  ConfigDriveLayout,
  ConfigDriveLayoutOptions,
  ConfigDriveSource,
  ConfigDriveSourceRole,
  ConfigDriveSources,
  GenisoimageFormat,
} from './config-drive-layout.js';
export { GenisoimageConfigDriveBuilder, genisoimageArgs } from './genisoimage-config-drive-builder.js';
export { configDriveModule, configDrivePlugin } from './config-drive-module.js';

export default configDrivePlugin;

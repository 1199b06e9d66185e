/** Both formats of the genisoimage builder pass the ConfigDriveBuilder contract suite that plugin authors run. */
import { ExecaProcessRunner, SilentLogger } from '@podvisor/core';
import { describeConfigDriveContract } from '@podvisor/core/testing';
import { GenisoimageConfigDriveBuilder } from './genisoimage-config-drive-builder.js';

const runner = new ExecaProcessRunner(new SilentLogger());
for (const format of ['config-2', 'nocloud']) {
  describeConfigDriveContract(`genisoimage ${format}`, async () => ({ builder: new GenisoimageConfigDriveBuilder(runner, new SilentLogger()), format }));
}

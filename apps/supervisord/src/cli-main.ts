/**
 * The `podvisor` command's dispatcher: `run` (the daemon, usually PID 1),
 * `doctor`, `events`, `ctl`, `console`, `image`, `plugins`, `version`. `cli.ts` runs it. Each subcommand has `--help`; exit codes are listed
 * in docs/cli.md.
 */
import type { CommandIo } from './commands/run-command.js';
import { VERSION } from './version.js';

const HELP = `Usage: podvisor <command> [options]

Commands:
  run       run the VM (the container's main process)
  doctor    check this container can run the VM: capabilities, devices, sysctls, volumes, binaries, KVM
  events    print the VM's event log (--follow, --json)
  ctl       steer the VM through the control endpoint (status, events, actions, raw QMP)
  console   attach to the serial console (detach with Ctrl-])
  image     pull|ls|gc|rebase: the shared base-image cache
  plugins   list the loaded plugins
  version   print the version

Run 'podvisor <command> --help' for a command's options.
`;

const VERSION_HELP = `Usage: podvisor version

Prints podvisor's version.
Exit codes: 0 ok, 2 usage error.
`;

export async function main(argv: readonly string[], io: CommandIo): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    // Each command loads only what it needs: startup time counts for PID 1.
    case 'run':
      return (await import('./commands/run-command.js')).runCommand(rest, io);
    case 'doctor':
      return (await import('./commands/doctor-command.js')).doctorCommand(rest, io);
    case 'events':
      return (await import('./commands/events-command.js')).eventsCommand(rest, io);
    case 'ctl':
      return (await import('./commands/ctl-command.js')).ctlCommand(rest, io);
    case 'console':
      return (await import('./commands/console-command.js')).consoleCommand(rest, io);
    case 'image':
      return (await import('./commands/image-command.js')).imageCommand(rest, io);
    case 'plugins':
      return (await import('./commands/plugins-command.js')).pluginsCommand(rest, io);
    case 'version':
    case '--version':
      if (rest.length === 1 && (rest[0] === '--help' || rest[0] === '-h')) {
        io.stdout.write(VERSION_HELP);
        return 0;
      }
      if (rest.length > 0) {
        io.stderr.write(`podvisor version: unexpected argument ${JSON.stringify(rest[0])}\n\n${VERSION_HELP}`);
        return 2;
      }
      io.stdout.write(`podvisor ${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(HELP);
      return command === undefined ? 2 : 0;
    default:
      io.stderr.write(`podvisor: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
      return 2;
  }
}

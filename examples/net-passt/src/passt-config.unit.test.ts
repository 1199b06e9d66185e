import { describe, expect, it } from 'vitest';
import { resolvePluginSettings } from '@podvisor/core';
import { PASST_SETTINGS, buildPasstArgs, parsePasstPorts, passtPortCount, passtPortSpec, resolvePasstConfig } from './passt-config.js';

/** As podvisor does it: the declared settings resolved and type-checked, then the backend's own checks. */
function resolve(env: Record<string, string> = {}, settings: Record<string, unknown> = {}, vncEnabled = true) {
  const typed = resolvePluginSettings(PASST_SETTINGS, { env, yaml: { network: { settings } } });
  if (typed.problems.length > 0) return { config: undefined, problems: typed.problems };
  return resolvePasstConfig({ settings: typed.settings, vnc: { enabled: vncEnabled, port: 5900 }, controlPort: 5800 });
}

describe('passt settings', () => {
  it('forwards every port but the control and VNC ports by default', () => {
    const { config, problems } = resolve();
    expect(problems).toEqual([]);
    expect(config).toEqual({ tcp: { kind: 'all' }, udp: { kind: 'all' }, reservedTcp: [5800, 5900] });
    expect(passtPortSpec(config!.tcp, config!.reservedTcp)).toBe('~5800,~5900');
    expect(passtPortSpec(config!.udp, [])).toBe('all');
    // With NO_VNC, 5900 goes to the VM like any port.
    expect(resolve({}, {}, false).config?.reservedTcp).toEqual([5800]);
  });

  it('reads lists from the environment before the YAML section', () => {
    const { config } = resolve({ PASST_TCP_PORTS: '22, 80,8000-8002' }, { tcpPorts: 'none', udpPorts: 'none' });
    expect(config?.tcp).toEqual({ kind: 'list', ranges: [[22, 22], [80, 80], [8000, 8002]] });
    expect(config?.udp).toEqual({ kind: 'none' });
    expect(passtPortSpec(config!.tcp, [])).toBe('22,80,8000-8002');
    expect(passtPortCount(config!.tcp, [])).toBe(5);
    expect(resolve({}, { tcpPorts: '443' }).config?.tcp).toEqual({ kind: 'list', ranges: [[443, 443]] });
  });

  it('reports every bad setting at once, naming it', () => {
    const { config, problems } = resolve({ PASST_TCP_PORTS: '80,5900', PASST_UDP_PORTS: '0' });
    expect(config).toBeUndefined();
    expect(problems).toEqual([
      { path: 'env PASST_TCP_PORTS', value: '80,5900', expected: "ports other than 5900, which stay with the pod (the control endpoint, and qemu's VNC unless NO_VNC is set)" },
      { path: 'env PASST_UDP_PORTS', value: '0', expected: 'all, none, or a list of ports and ranges such as 22,80,8000-8100' },
    ]);
    for (const bad of ['', '80-22', '65536', '22;80', 'some']) expect(parsePasstPorts(bad), bad).toBeUndefined();
  });

  it('builds a foreground passt on a unix socket with the ports named', () => {
    const { config } = resolve({ PASST_TCP_PORTS: '80', PASST_UDP_PORTS: 'none' });
    expect(buildPasstArgs({ socket: '/state/passt.sock', config: config! })).toEqual([
      '--foreground', '--stderr', '--socket=/state/passt.sock', '--ipv4-only', '--tcp-ports', '80', '--udp-ports', 'none',
    ]);
  });
});

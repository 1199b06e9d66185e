import { describe, expect, it } from 'vitest';
import { redactArgv, redactUrl, redactUrlsIn } from './errors.js';

describe('redactUrl', () => {
  it('hides credentials, every query value and the fragment, and keeps the rest', () => {
    expect(redactUrl('https://user:pw@images.example.com/a.qcow2')).toBe('https://***:***@images.example.com/a.qcow2');
    expect(redactUrl('https://b.s3.amazonaws.com/x.qcow2?X-Amz-Algorithm=AWS4&X-Amz-Signature=abcdef&X-Amz-Signature=again')).toBe(
      'https://b.s3.amazonaws.com/x.qcow2?X-Amz-Algorithm=***&X-Amz-Signature=***',
    );
    expect(redactUrl('http://h:8080/p?token=s3cr3t#frag')).toBe('http://h:8080/p?token=***#***');
    expect(redactUrl('https://h/p?s3cr3t&a=1&%20x=2')).toBe('https://h/p?***&a=***');
  });

  it('leaves a URL without secrets and a local path exactly as given', () => {
    for (const s of ['https://images.example.com/debian-12.qcow2', '/var/lib/a?b.qcow2', 'file:///srv/a.qcow2', 'debian-12']) expect(redactUrl(s)).toBe(s);
  });

  it('still hides what looks like credentials and a query in text that is not a URL', () => {
    expect(redactUrl('ht tp://u:p@h/x?sig=1')).toBe('ht tp://***@h/x?***');
  });

  it('redacts every URL inside a text', () => {
    expect(redactUrlsIn('pull of https://u:p@h/a?sig=x failed; see http://h/doc')).toBe('pull of https://***:***@h/a?sig=*** failed; see http://h/doc');
    expect(redactUrlsIn('-drive file=https://h/a.qcow2?token=t,format=raw')).toBe('-drive file=https://h/a.qcow2?token=***');
  });
});

describe('redactArgv', () => {
  it('hides secret values in qemu option lists, secret objects, flags and URLs, and keeps the rest', () => {
    const argv = [
      'qemu-system-x86_64',
      '-vnc', 'unix:/run/vnc.sock,password=on',
      '-object', 'secret,id=sec0,data=hunter2,format=raw',
      '-drive', 'file=https://alice:pw@example.com/disk.qcow2?token=abc,format=qcow2,if=virtio',
      '-blockdev', 'driver=nbd,server.type=inet,password=s3cret,,with-comma,export=disk',
      '--api-token=xyz', '--password', 'letmein', '-m', '256',
    ];
    expect(redactArgv(argv)).toEqual([
      'qemu-system-x86_64',
      '-vnc', 'unix:/run/vnc.sock,password=on',
      '-object', 'secret,id=sec0,data=***,format=raw',
      '-drive', 'file=https://***:***@example.com/disk.qcow2?token=***,format=qcow2,if=virtio',
      '-blockdev', 'driver=nbd,server.type=inet,password=***,export=disk',
      '--api-token=***', '--password', '***', '-m', '256',
    ]);
  });

  it('leaves a plain command line as it is', () => {
    const argv = ['dnsmasq', '--keep-in-foreground', '--pid-file=/run/dnsmasq.pid', '--dhcp-range=10.0.2.15,10.0.2.15', '-drive', 'file=/var/lib/disk.qcow2,data=x'];
    expect(redactArgv(argv)).toEqual(argv);
  });
});

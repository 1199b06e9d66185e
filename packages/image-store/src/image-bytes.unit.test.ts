import { describe, expect, it } from 'vitest';
import { describeBytes, hexPrefix, isNotADisk } from './image-bytes.js';

describe('describeBytes', () => {
  it.each([
    ['qcow2', Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])],
    ['HTML', Buffer.from('\n  <!DOCTYPE html><html><body>Sign in</body></html>')],
    ['HTML', Buffer.from('<html lang="en"><head>')],
    ['XML', Buffer.from('<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>')],
    ['JSON', Buffer.from('{"error":"unauthorized"}')],
    ['text', Buffer.from('Service Unavailable\n')],
    ['gzip archive', Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0])],
    ['xz archive', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0])],
    ['VMDK image', Buffer.from('KDMV\x01\x00\x00\x00', 'latin1')],
    ['unrecognised', Buffer.alloc(512)],
    ['unrecognised', Buffer.concat([Buffer.from([0xeb, 0x63, 0x90]), Buffer.alloc(507), Buffer.from([0x55, 0xaa])])],
  ])('%s', (kind, bytes) => {
    expect(describeBytes(bytes)).toBe(kind);
  });

  it('only unrecognised bytes may be a raw disk', () => {
    expect(isNotADisk('unrecognised')).toBe(false);
    expect(isNotADisk('qcow2')).toBe(false);
    expect(isNotADisk('HTML')).toBe(true);
    expect(hexPrefix(Buffer.from('<!doc'))).toBe('3c 21 64 6f 63');
  });
});

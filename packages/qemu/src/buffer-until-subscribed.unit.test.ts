import { Subject, toArray, firstValueFrom } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { bufferUntilSubscribed } from './buffer-until-subscribed.js';

describe('bufferUntilSubscribed', () => {
  it('replays what came before the first subscriber, then goes live; later subscribers see live values only', async () => {
    const source = new Subject<string>();
    const events = bufferUntilSubscribed(source);
    source.next('RESUME');
    source.next('STOP');
    const first = firstValueFrom(events.pipe(toArray()));
    source.next('RESET');
    const second = firstValueFrom(events.pipe(toArray()));
    source.next('SHUTDOWN');
    source.complete();
    expect(await first).toEqual(['RESUME', 'STOP', 'RESET', 'SHUTDOWN']);
    expect(await second).toEqual(['SHUTDOWN']);
  });

  it('keeps only the newest values past the limit, and completes a late first subscriber after the buffered values', async () => {
    const source = new Subject<number>();
    const events = bufferUntilSubscribed(source, 2);
    source.next(1);
    source.next(2);
    source.next(3);
    source.complete();
    expect(await firstValueFrom(events.pipe(toArray()))).toEqual([2, 3]);
  });
});

/**
 * An rxjs helper for the VM handle's events: it subscribes to a hot source at
 * once and keeps what arrives until the first subscriber comes, who gets the
 * kept values first and then the live ones. The runtime resumes the guest
 * before the caller can subscribe; this way the RESUME (and anything the guest
 * does in the first milliseconds) is not lost. Later subscribers see live
 * values only, like any hot observable.
 */
import { Observable, Subject } from 'rxjs';

/** Keeps at most `limit` values (the newest) while nobody listens. */
export function bufferUntilSubscribed<T>(source: Observable<T>, limit = 1000): Observable<T> {
  const live = new Subject<T>();
  let kept: T[] | null = [];
  source.subscribe({
    next: (value) => {
      if (kept === null) {
        live.next(value);
        return;
      }
      kept.push(value);
      if (kept.length > limit) kept.shift();
    },
    error: (err: unknown) => live.error(err),
    complete: () => live.complete(),
  });
  return new Observable<T>((subscriber) => {
    if (kept !== null) {
      const values = kept;
      kept = null;
      for (const value of values) subscriber.next(value);
    }
    return live.subscribe(subscriber);
  });
}

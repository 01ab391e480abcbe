// Waiting with a deadline. A regression that stops something from happening must fail the test and say
// what was awaited and what was last seen, not hang the suite.
import { inspect } from 'node:util';

/** Generous on purpose: the suites run on loaded 2-core machines, where a step can take 20× longer. */
export const WAIT_MS = 30_000;

/** A per-test limit for tests that train, spawn or connect: far above their time on an idle machine. */
export const SLOW_TEST = { timeout: 180_000 };

export interface WaitOptions<T> {
  /** When the probed value is what we wait for; by default, when it is truthy. */
  until?: (value: T) => boolean;
  timeoutMs?: number;
  intervalMs?: number;
}

const show = (value: unknown): string => inspect(value, { depth: 3, breakLength: Infinity, maxArrayLength: 8, maxStringLength: 300 });

/** Polls `probe` until its value passes `until`; resolves with that value. */
export async function waitUntil<T>(what: string, probe: () => T | Promise<T>, { until = (v) => Boolean(v), timeoutMs = WAIT_MS, intervalMs = 10 }: WaitOptions<T> = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (until(value)) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${show(value)}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Awaits a promise that may never settle (a line a child process should print, a reply that should come). */
export async function within<T>(what: string, promise: Promise<T>, timeoutMs = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

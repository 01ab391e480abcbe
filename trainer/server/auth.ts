/**
 * Who may open a socket to the trainer. Threat model (docs/vscode-craft.md, Security): any web page in the
 * user's browser can try `ws://127.0.0.1:PORT` (drive-by or DNS rebinding), and any local process can
 * connect. The token stops both; the Origin check stops a page even if the token leaked into it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** A fresh 128-bit token, as hex. One per trainer process. */
export function generateToken(): string {
  return randomBytes(16).toString('hex');
}

/**
 * The token a client presented: the `Authorization: Bearer` header, else the `token` query parameter
 * (browsers cannot set headers on a WebSocket).
 */
export function presentedToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1] : undefined;
  }
  try {
    return new URL(req.url ?? '/', 'http://trainer.invalid').searchParams.get('token') ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Constant-time comparison. Hashing first makes both sides 32 bytes, so neither the length check that
 * timingSafeEqual demands nor an early return leaks the token's length or a matching prefix.
 */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** Node clients (the extension host) send no Origin; a browser always does, and it must be one we know. */
export function originAllowed(origin: string | undefined, allowed: ReadonlySet<string>): boolean {
  return origin === undefined || allowed.has(origin.toLowerCase());
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * The origins of pages the trainer serves itself (the dashboard in a plain browser), which may connect
 * back to it. A wildcard bind has no single own origin, so it allows only the loopback ones.
 */
export function ownOrigins(host: string, port: number): string[] {
  const names = new Set(['127.0.0.1', 'localhost', '::1']);
  if (host !== '0.0.0.0' && host !== '::') names.add(host);
  return [...names].map((h) => `http://${h.includes(':') ? `[${h}]` : h}:${port}`.toLowerCase());
}

/** Pure text for the notifications of commands that failed (unit-tested without VS Code). */

/**
 * The notification's text: why it failed and the last few distinct lines the trainer printed (a bad
 * config's problems, each with its JSON path), each once.
 */
export function summariseFailure(error: Error, lines: readonly string[]): string {
  const message = error.message.replace(/\.$/, '');
  const distinct = [...new Set(lines.map((l) => l.trim()).filter((l) => l && !message.includes(l)))].slice(-6);
  return distinct.length ? `${message}. ${distinct.join(' | ')}` : `${message}.`;
}

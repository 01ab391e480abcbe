/**
 * The TypeBox building blocks every message schema in common/ is made of, and the one validator they are
 * checked with, so the wire protocol and the dashboard messages report problems the same way.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** A number; TypeBox refuses NaN and ±Infinity by default, so every number on the wire is finite. */
export const Finite = (opts: object = {}) => Type.Number({ ...opts });
export const Int = (opts: object = {}) => Type.Integer({ ...opts });
export const Str = (max = 200) => Type.String({ maxLength: max });

export interface ValidationIssue {
  /** JSON pointer into the message, e.g. `/command/lr`. */
  path: string;
  message: string;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; issues: ValidationIssue[] };

/** The value typed by its schema, or its first ten issues. */
export function validate<S extends TSchema>(schema: S, value: unknown): Validated<Static<S>> {
  if (Value.Check(schema, value)) return { ok: true, value };
  const issues: ValidationIssue[] = [];
  for (const e of Value.Errors(schema, value)) {
    issues.push({ path: e.path || '/', message: e.message });
    if (issues.length >= 10) break;
  }
  return { ok: false, issues };
}

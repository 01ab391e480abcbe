/**
 * The p schedule a run planned at every step: its config's schedule from step 0, replaced by every
 * accepted `set_schedule` (the control record's `new` is `{fromStep, schedule}`). Pure; evaluated with
 * the trainer's own `evaluate` (common/schedules.ts), so the dashboard's curve is the trainer's curve.
 */
import { evaluate, type ScheduleSpec } from '../common/schedules.js';
import type { ControlRecord, RunStarted } from './store.js';

export interface PlannedEntry {
  fromStep: number;
  spec: ScheduleSpec;
}

export function configSchedule(started: RunStarted | null): ScheduleSpec | null {
  const optimizer = (started?.config as { optimizer?: { type?: string; schedule?: ScheduleSpec } } | undefined)?.optimizer;
  return optimizer?.type === 'dynmuon' && optimizer.schedule ? optimizer.schedule : null;
}

export function plannedEntries(started: RunStarted | null, controls: readonly ControlRecord[]): PlannedEntry[] {
  const first = configSchedule(started);
  if (!first) return [];
  const entries: PlannedEntry[] = [{ fromStep: 0, spec: first }];
  for (const c of controls) {
    if (c.command !== 'set_schedule') continue;
    const n = c.new as { fromStep?: number; schedule?: ScheduleSpec } | null;
    if (n?.schedule) entries.push({ fromStep: n.fromStep ?? c.step, spec: n.schedule });
  }
  return entries;
}

export function specAt(entries: readonly PlannedEntry[], step: number): ScheduleSpec | null {
  let spec: ScheduleSpec | null = null;
  for (const e of entries) if (e.fromStep <= step) spec = e.spec;
  return spec;
}

/**
 * p over [0, totalSteps] at `points` evenly spaced steps plus both sides of every replacement, so the
 * jump at an edit is drawn where it happened.
 */
export function plannedCurve(entries: readonly PlannedEntry[], totalSteps: number, points: number): { x: Float64Array; y: Float64Array } {
  if (!entries.length) return { x: new Float64Array(0), y: new Float64Array(0) };
  const steps = new Set<number>();
  for (let i = 0; i <= points; i++) steps.add((i / points) * totalSteps);
  for (const e of entries) if (e.fromStep > 0) steps.add(e.fromStep - 1).add(e.fromStep);
  const x = Float64Array.from([...steps].sort((a, b) => a - b));
  const y = x.map((step) => {
    const spec = specAt(entries, step);
    return spec ? evaluate(spec, step / totalSteps) : NaN;
  });
  return { x, y };
}

/** `muonscope inspect RUNDIR`: a run's summary from its folder alone. */
import { listCheckpoints } from './checkpoint.js';
import { runDirOf } from '../../common/run-folder/layout.js';
import { readRunLog } from '../../common/run-folder/log.js';
import type { LogRecordKind, RecordOf } from '../../common/protocol.js';

export function inspectRun(dir: string): string {
  const paths = runDirOf(dir);
  const { records, skipped } = readRunLog(paths.log);
  const of = <K extends LogRecordKind>(kind: K) => records.filter((r): r is RecordOf<K> => r.kind === kind);
  const started = of('run_started');
  const steps = of('step');
  const evals = of('eval');
  const states = of('state');
  const controls = of('control');
  const alerts = of('alert');
  const first = started[0];
  const lines = [`run ${paths.dir}`];
  if (first) {
    lines.push(`  id ${first.runId}; ${first.totalSteps} steps planned; backend ${first.backend.chosen}, kernels ${first.kernels.chosen}`);
    lines.push(`  task ${first.task.name}${first.task.lossFloor !== null ? `, best possible loss ${first.task.lossFloor.toFixed(4)} (${first.task.lossFloorLabel})` : ''}`);
    if (started.length > 1) lines.push(`  resumed ${started.length - 1} time(s): ${started.slice(1).map((s) => `at step ${s.step}`).join(', ')}`);
  }
  const lastStep = steps.at(-1);
  lines.push(`  state ${states.at(-1)?.state ?? (lastStep ? 'running or killed' : 'not started')}${states.at(-1)?.reason ? ` (${states.at(-1)!.reason})` : ''}`);
  if (lastStep) lines.push(`  steps done ${lastStep.step + 1}; last train loss ${lastStep.loss.toFixed(4)}; lr ${lastStep.lr}; p ${lastStep.p ?? '–'}`);
  const lastEval = evals.at(-1);
  if (lastEval) lines.push(`  last validation loss ${lastEval.valLoss.toFixed(4)} at step ${lastEval.step}`);
  lines.push(`  changes ${controls.length}${controls.length ? ':' : ''}`);
  for (const c of controls) lines.push(`    step ${c.step}: ${c.command} ${c.field} ${JSON.stringify(c.old)} → ${JSON.stringify(c.new)} by ${c.source}${c.reason ? ` (${c.reason})` : ''}`);
  lines.push(`  alerts ${alerts.length}${alerts.length ? ':' : ''}`);
  for (const a of alerts) lines.push(`    step ${a.step}: ${a.level} ${a.code}${a.layer ? ` [${a.layer}]` : ''}: ${a.message.split('\n')[0]}`);
  lines.push(`  checkpoints ${listCheckpoints(paths.checkpoints).length}; log records ${records.length}${skipped.length ? `; skipped lines: ${skipped.map((s) => `${s.line} (${s.reason})`).join(', ')}` : ''}`);
  return lines.join('\n');
}

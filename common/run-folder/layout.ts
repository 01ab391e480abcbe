/**
 * A run's folder: everything needed to open, inspect or resume it without the process that made it.
 * The trainer writes it and the extension reads it, so its layout lives here; creating one from a run
 * config is the trainer's own business (trainer/run/new-run-dir.ts).
 *
 *   config.json        the config as run, defaults filled in
 *   log.ndjson         the event log (the truth)
 *   checkpoints/       step-NNNNNNNN.ckpt, written atomically
 *   trainer.json       while a trainer serves it: pid, URL and token (mode 0600), for re-attaching
 */
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { MuonscopeError } from '../errors.js';

export const RUN_FILES = { config: 'config.json', log: 'log.ndjson', checkpoints: 'checkpoints', trainer: 'trainer.json' } as const;

export interface RunPaths {
  dir: string;
  config: string;
  log: string;
  checkpoints: string;
  trainer: string;
}

export function runPaths(dir: string): RunPaths {
  return {
    dir,
    config: join(dir, RUN_FILES.config),
    log: join(dir, RUN_FILES.log),
    checkpoints: join(dir, RUN_FILES.checkpoints),
    trainer: join(dir, RUN_FILES.trainer),
  };
}

/** The run folder a checkpoint file belongs to, or the folder itself. */
export function runDirOf(checkpointOrDir: string): RunPaths {
  const dir = basename(dirname(checkpointOrDir)) === RUN_FILES.checkpoints ? dirname(dirname(checkpointOrDir)) : checkpointOrDir;
  const paths = runPaths(dir);
  if (!existsSync(paths.config) || !existsSync(paths.log)) {
    throw new MuonscopeError('INVALID_ARGUMENT', `${checkpointOrDir} is not in a run folder (no ${RUN_FILES.config} and ${RUN_FILES.log} beside it)`, { path: checkpointOrDir });
  }
  return paths;
}

export function readRunConfigFile(paths: RunPaths): unknown {
  return JSON.parse(readFileSync(paths.config, 'utf8'));
}

export interface TrainerInfo {
  pid: number;
  url: string;
  token: string;
}

/** Lets an editor window re-attach to a trainer that outlived the window that started it. */
export function writeTrainerInfo(paths: RunPaths, info: TrainerInfo): void {
  writeFileSync(paths.trainer, JSON.stringify(info) + '\n', { mode: 0o600 });
  chmodSync(paths.trainer, 0o600);
}

export function removeTrainerInfo(paths: RunPaths): void {
  rmSync(paths.trainer, { force: true });
}

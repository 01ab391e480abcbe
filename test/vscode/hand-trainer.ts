/**
 * Trainers a user starts by hand in a terminal (`muonscope train CONFIG --out DIR`), for the scenarios that
 * attach to them; every one started here is killed when the suite ends, whatever happened. Also the run
 * folder's log as the test reads it, and a port where nothing listens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { LogRecord } from '../../common/protocol.js';
import { TestClient } from '../helpers/ws-client.js';
import { freePort } from './code-server.js';

export interface HandTrainer {
  url: string;
  token: string;
  runDir: string;
  /** The run folder's name: the run's label in the tree and on its dashboard tab. */
  folder: string;
  pid: number;
  exited: Promise<number | null>;
  running(): boolean;
}

export class HandTrainers {
  private readonly children: ChildProcess[] = [];

  constructor(
    private readonly cliPath: string,
    private readonly outputFile: string,
  ) {}

  /** Starts `train CONFIG --out OUT` and resolves once it prints its listening line (URL, token, run folder). */
  start(config: string, out: string, timeoutMs = 120_000): Promise<HandTrainer> {
    const child = spawn(process.execPath, [this.cliPath, 'train', config, '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.stderr!.on('data', (d) => appendFileSync(this.outputFile, `[pid ${child.pid} stderr] ${String(d)}`));
    return new Promise((resolve, reject) => {
      let buffered = '';
      const timer = setTimeout(() => reject(new Error(`the hand-started trainer (${config}) printed no listening line within ${timeoutMs / 1000} s`)), timeoutMs);
      void exited.then((code) => reject(new Error(`the hand-started trainer (${config}) exited with ${code} before listening; see ${this.outputFile}`)));
      child.stdout!.on('data', (d) => {
        appendFileSync(this.outputFile, `[pid ${child.pid}] ${String(d)}`);
        buffered += String(d);
        const line = buffered.split('\n').slice(0, -1).find((l) => l.startsWith('{"event":"listening"'));
        if (!line) return;
        clearTimeout(timer);
        const info = JSON.parse(line) as { url: string; token: string; runDir: string };
        resolve({ ...info, folder: basename(info.runDir), pid: child.pid!, exited, running: () => child.exitCode === null && child.signalCode === null });
      });
    });
  }

  /** Kills every trainer started here that is still running. */
  killAll(): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

/** Sends one command to a trainer as another client would (the test's own hand on it). */
export async function commandTrainer(t: { url: string; token: string }, command: Parameters<TestClient['command']>[0]): Promise<void> {
  const client = await TestClient.connect(t.url, t.token);
  try {
    const reply = await client.command(command, 'e2e');
    if (reply.type === 'error') throw new Error(`the trainer refused ${command.kind}: ${reply.message}`);
  } finally {
    client.close();
  }
}

/** The records of a run folder's log, as they are on disk now. */
export function runLog(runDir: string): LogRecord[] {
  const file = join(runDir, 'log.ndjson');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as LogRecord);
}

/** A port on 127.0.0.1 where nothing listens: a free port (bound, then closed) that nobody took yet. */
export const closedPort = freePort;

/** Kills the trainers still serving these run folders (VS Code started them and keeps them running). */
export function killTrainersUnder(runDirs: readonly string[]): number[] {
  const killed: number[] = [];
  for (const dir of runDirs) {
    const file = join(dir, 'trainer.json');
    if (!existsSync(file)) continue;
    try {
      const { pid } = JSON.parse(readFileSync(file, 'utf8')) as { pid: number };
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // gone already, or the file was half-written
    }
  }
  return killed;
}

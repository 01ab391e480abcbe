/** What a start asks for, and the CLI arguments it becomes (no VS Code here: tested with plain Node). */

export interface StartRequest {
  /** A config file, or for a continued run the run folder to resume from. */
  configPath?: string;
  resumeRunDir?: string;
  runRoot: string;
  cwd: string;
  /**
   * A PyTorch run (a config with `command`, docs/python.md §5): the command as started, its interpreter
   * already substituted. The CLI is then `muonscope run CONFIG --out ROOT -- COMMAND…`, which prints the
   * same listening line and serves the run as `train` does.
   */
  command?: string[];
}

/** `diagnosticsEvery`: the muonscope.diagnosticsEvery setting (null: the config's own cadence). */
export function cliArgs(req: StartRequest, diagnosticsEvery: number | null): string[] {
  if (req.command) {
    if (!req.configPath || req.resumeRunDir) throw new Error('a PyTorch run starts from its config file (it is not resumed by the CLI)');
    if (req.command.length === 0) throw new Error('a PyTorch run needs a command');
    // The cadence setting is the built-in trainer's (`train --default-diagnostics-every`); the script's
    // muonscope.watch() sets its own.
    return ['run', req.configPath, '--out', req.runRoot, '--', ...req.command];
  }
  const args = ['train'];
  if (req.configPath) args.push(req.configPath);
  if (req.resumeRunDir) args.push('--resume', req.resumeRunDir);
  // A setting is part of the run's config from its first step (the trainer applies it only where the
  // config leaves `diagnostics.every` out), not a change in its audit trail that nobody made.
  if (diagnosticsEvery !== null && !req.resumeRunDir) args.push('--default-diagnostics-every', String(diagnosticsEvery));
  args.push('--out', req.runRoot);
  return args;
}

/**
 * Which trainers this workspace is attached to by URL, kept in workspaceState (tokens stay in
 * SecretStorage), so that a window reload re-attaches them instead of leaving their dashboards waiting.
 */
import type * as vscode from 'vscode';

const KEY = 'muonscope.attachedTrainers';

export class AttachedTrainers {
  constructor(private readonly state: vscode.Memento) {}

  list(): string[] {
    return this.state.get<string[]>(KEY, []);
  }

  remember(url: string): void {
    if (!this.list().includes(url)) void this.state.update(KEY, [...this.list(), url]);
  }

  forget(url: string): void {
    void this.state.update(KEY, this.list().filter((u) => u !== url));
  }
}

/** Tokens for Attach to Trainer, kept in SecretStorage (never in settings or workspace state), by URL. */
import type * as vscode from 'vscode';

const key = (url: string) => `muonscope.token:${url}`;

export class TokenStore {
  constructor(private readonly secrets: vscode.SecretStorage) {}

  get(url: string): Thenable<string | undefined> {
    return this.secrets.get(key(url));
  }

  set(url: string, token: string): Thenable<void> {
    return this.secrets.store(key(url), token);
  }

  delete(url: string): Thenable<void> {
    return this.secrets.delete(key(url));
  }
}

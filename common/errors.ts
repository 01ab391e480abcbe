/**
 * One error type for everything the trainer refuses, with a stable machine-readable code, so that the
 * CLI, the WebSocket server and the extension can all report it without parsing messages.
 */
export type MuonscopeErrorCode =
  | 'NON_FINITE'
  | 'SHAPE_MISMATCH'
  | 'UNKNOWN_PARAMETER'
  | 'MISSING_GRADIENT'
  | 'UNKNOWN_OPTIMIZER'
  | 'UNKNOWN_SCHEDULE'
  | 'UNKNOWN_MODE'
  | 'UNKNOWN_COEFFICIENTS'
  | 'P_OUT_OF_RANGE'
  | 'INVALID_HYPERPARAMETER'
  | 'INVALID_STATE'
  | 'BACKEND_UNAVAILABLE'
  | 'KERNELS_UNAVAILABLE'
  | 'INVALID_ARGUMENT';

export class MuonscopeError extends Error {
  readonly code: MuonscopeErrorCode;
  /** Structured context (parameter name, offending value...) for UIs and logs. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: MuonscopeErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'MuonscopeError';
    this.code = code;
    this.details = details;
  }
}

export function isMuonscopeError(e: unknown, code?: MuonscopeErrorCode): e is MuonscopeError {
  return e instanceof MuonscopeError && (code === undefined || e.code === code);
}

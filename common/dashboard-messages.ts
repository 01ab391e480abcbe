/**
 * The messages between the dashboard and its host (the extension host, or the trainer's own page
 * adapter). The dashboard never opens a socket in VS Code: the extension host is the one client of every
 * trainer and relays records to each panel in batches. In a plain browser (the page the trainer serves),
 * a tiny adapter speaks the WebSocket protocol and translates it into these same messages.
 */
import { Type, type Static } from '@sinclair/typebox';
import { CommandSchema, LogRecordSchema } from './protocol.js';
import { Int, Str, validate } from './schema.js';

export const CONNECTION_STATES = ['connecting', 'live', 'offline', 'ended'] as const;

export const RunDescriptorSchema = Type.Object({
  runId: Str(),
  label: Str(),
  runDir: Str(4096),
  live: Type.Boolean(),
});
export type RunDescriptor = Static<typeof RunDescriptorSchema>;

export const ToDashboardSchema = Type.Union([
  /** The runs this panel shows (the first is the focused one). Sent on `ready` and when the set changes. */
  Type.Object({ type: Type.Literal('runs'), runs: Type.Array(RunDescriptorSchema) }),
  /** Records of one run in seq order; may repeat seqs already sent (the dashboard keeps the first). */
  Type.Object({ type: Type.Literal('records'), runId: Str(), records: Type.Array(LogRecordSchema) }),
  Type.Object({
    type: Type.Literal('connection'),
    runId: Str(),
    state: Type.Union(CONNECTION_STATES.map((s) => Type.Literal(s))),
    detail: Type.Optional(Str(1000)),
  }),
  /** The trainer's answer to a command the dashboard sent. */
  Type.Object({
    type: Type.Literal('reply'),
    runId: Str(),
    reply: Type.Union([
      Type.Object({ type: Type.Literal('ack'), id: Str(64), kind: Str(40), step: Int(), detail: Type.Optional(Str(1000)) }),
      Type.Object({ type: Type.Literal('error'), id: Type.Optional(Str(64)), code: Str(40), message: Str(2000), path: Type.Optional(Str(500)) }),
    ]),
  }),
]);
export type ToDashboard = Static<typeof ToDashboardSchema>;

export const FromDashboardSchema = Type.Union([
  /** The page has loaded (or reloaded): send the runs and their full history. */
  Type.Object({ type: Type.Literal('ready') }, { additionalProperties: false }),
  Type.Object(
    { type: Type.Literal('command'), runId: Str(), id: Type.String({ minLength: 1, maxLength: 64 }), command: CommandSchema },
    { additionalProperties: false },
  ),
  /** Ask the host to add a finished or live run to this panel (Compare). */
  Type.Object({ type: Type.Literal('pickRun') }, { additionalProperties: false }),
]);
export type FromDashboard = Static<typeof FromDashboardSchema>;

export const validateFromDashboard = (v: unknown) => validate(FromDashboardSchema, v);
export const validateToDashboard = (v: unknown) => validate(ToDashboardSchema, v);

/**
 * The part of a panel's saved state (vscode.setState) that says which runs it showed. VS Code hands it
 * back to the extension's serializer after a window reload, so each panel is restored to its own runs
 * whatever order the workbench revives panels in.
 */
export const SavedPanelRunsSchema = Type.Object({
  runs: Type.Array(Type.Object({ runId: Str(), runDir: Str(4096) }), { maxItems: 64 }),
});
export type SavedPanelRuns = Static<typeof SavedPanelRunsSchema>;

/** The saved runs of a panel's state, or undefined when the state does not carry them (older pages). */
export function savedPanelRuns(state: unknown): SavedPanelRuns['runs'] | undefined {
  const checked = validate(SavedPanelRunsSchema, state);
  return checked.ok ? checked.value.runs : undefined;
}

/**
 * The dashboard: one store fed by the host's messages, a controls bar, a tab list of views, and a redraw
 * on requestAnimationFrame (at most once a frame, only for the visible view), never per message.
 */
// First: the toolkit's modules need the CSP nonce as they load.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { Commands } from './commands.js';
import { ControlsBar } from './controls.js';
import { debug, markFrameEnd, markFrameStart } from './debug.js';
import { h, setText } from './dom.js';
import type { SavedPanelRuns } from '../common/dashboard-messages.js';
import { connectHost } from './host.js';
import { Store } from './store.js';
import { paintCharts } from './charts/chart.js';
import { watchTheme } from './charts/theme.js';
import { CompareView } from './views/compare.js';
import { CurvatureView } from './views/curvature.js';
import { LayerDetailView } from './views/layer-detail.js';
import { LayersView } from './views/layers.js';
import { OverviewView } from './views/overview.js';
import { ScheduleView } from './views/schedule.js';
import { SuggestionsView } from './views/suggestions.js';
import { DEFAULT_UI, VIEW_IDS, type UiState, type View, type ViewContext, type ViewId } from './views/view.js';

const host = connectHost();
const store = new Store();
debug.store = store;
const commands = new Commands(host, store);
const saved = host.getState<Partial<UiState>>();
const ui: UiState = { ...DEFAULT_UI, ...saved, view: VIEW_IDS.includes(saved?.view as ViewId) ? (saved!.view as ViewId) : DEFAULT_UI.view };

/**
 * The page's saved state: the UI, and which runs it shows, which the extension's serializer reads to
 * restore this panel to the same runs after a window reload.
 */
function saveState(): void {
  const runs: SavedPanelRuns['runs'] = store.descriptors.map((d) => ({ runId: d.runId, runDir: d.runDir }));
  host.setState({ ...ui, runs });
}

/** Milliseconds of chart painting per frame; the rest of a 16 ms frame is for the views and the browser. */
const CHART_PAINT_BUDGET_MS = 6;

let frame = 0;
let forceNext = true;
const requestRender = (force = false): void => {
  forceNext ||= force;
  frame ||= requestAnimationFrame(draw);
};

const ctx: ViewContext = {
  store,
  commands,
  host,
  ui,
  uiChanged: () => {
    saveState();
    requestRender(true);
  },
  show: (view) => showView(view),
  requestRender: () => requestRender(),
};

const app = document.getElementById('app')!;
const title = h('h1', { id: 'run-title' }, 'Muonscope');
const status = h('p', { id: 'run-status', role: 'status' }, 'Waiting for the trainer…');
const controls = new ControlsBar(commands, () => store.focused);
const views: View[] = [new OverviewView(ctx), new LayersView(ctx), new LayerDetailView(ctx), new CurvatureView(ctx), new ScheduleView(ctx), new SuggestionsView(ctx), new CompareView(ctx)];
const tabs = h('div', { role: 'tablist', 'aria-label': 'Dashboard views', class: 'tabs' });
const tabButtons = new Map<ViewId, HTMLButtonElement>();
for (const v of views) {
  const b = h('button', { role: 'tab', id: `tab-${v.id}`, 'aria-controls': `view-${v.id}` }, v.title);
  b.addEventListener('click', () => showView(v.id));
  b.addEventListener('keydown', (e) => {
    // Arrow keys move between tabs, as in every tab list (WAI-ARIA).
    const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
    if (!step) return;
    const next = views[(views.indexOf(v) + step + views.length) % views.length];
    showView(next.id);
    tabButtons.get(next.id)!.focus();
  });
  tabButtons.set(v.id, b);
  tabs.append(b);
  v.el.id = `view-${v.id}`;
  v.el.setAttribute('role', 'tabpanel');
  v.el.setAttribute('aria-labelledby', b.id);
}
const header = h('header');
header.append(title, status);
app.append(header, controls.el, tabs, ...views.map((v) => v.el));

function showView(id: ViewId): void {
  ui.view = id;
  debug.view = id;
  for (const v of views) v.el.hidden = v.id !== id;
  for (const [vid, b] of tabButtons) {
    b.setAttribute('aria-selected', String(vid === id));
    b.tabIndex = vid === id ? 0 : -1;
  }
  ctx.uiChanged();
}

function draw(): void {
  frame = 0;
  markFrameStart();
  const force = forceNext;
  forceNext = false;
  debug.frames++;
  const run = store.focused;
  if (run) {
    const name = (run.started?.config as { name?: string } | undefined)?.name;
    setText(title, `Muonscope — ${store.descriptors[0]?.label ?? name ?? run.runId}`);
    setText(status, `${run.state ?? 'waiting'} · step ${run.step + 1}${run.started ? ` of ${run.started.totalSteps}` : ''} · ${run.connection}${run.connectionDetail ? ` (${run.connectionDetail})` : ''}`);
  }
  controls.render();
  views.find((v) => v.id === ui.view)?.render(ctx, force);
  if (paintCharts(CHART_PAINT_BUDGET_MS)) requestRender();
  markFrameEnd();
}

store.onChange(() => requestRender());
host.onMessage((msg) => {
  store.handle(msg);
  if (msg.type === 'runs') saveState();
});
watchTheme();
showView(ui.view);
host.post({ type: 'ready' });

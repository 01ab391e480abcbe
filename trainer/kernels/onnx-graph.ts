/**
 * Builds the optimizer's small ONNX graphs in memory (no Python, no files): a tiny builder over
 * onnx-proto plus one function per kernel. Every graph has fixed input shapes, so onnxruntime can plan
 * its buffers once per (kind, shape, coefficients) and reuse the session for every step.
 */
import onnxProto from 'onnx-proto';
import type { NsStep } from '../linalg/ns-coefficients.js';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const DOUBLE = onnx.TensorProto.DataType.DOUBLE;
const INT64 = onnx.TensorProto.DataType.INT64;

export type ElementType = 'float32' | 'float64';

class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private counter = 0;

  constructor(private readonly elemType: number) {}

  input(name: string, dims: number[]): string {
    this.inputs.push(this.valueInfo(name, dims));
    return name;
  }

  output(value: string, name: string, dims: number[]): void {
    this.nodes.push({ opType: 'Identity', input: [value], output: [name] });
    this.outputs.push(this.valueInfo(name, dims));
  }

  /** A scalar constant of the graph's element type (fp32 coefficients are rounded once, here). */
  scalar(value: number): string {
    const name = `c${this.counter++}`;
    const tensor: onnxProto.onnx.ITensorProto = { name, dims: [], dataType: this.elemType };
    if (this.elemType === DOUBLE) tensor.doubleData = [value];
    else tensor.floatData = [value];
    this.initializers.push(tensor);
    return name;
  }

  initializer(tensor: onnxProto.onnx.ITensorProto): void {
    this.initializers.push(tensor);
  }

  index(i: number): string {
    const name = `i${this.counter++}`;
    this.initializers.push({ name, dims: [], dataType: INT64, int64Data: [i] });
    return name;
  }

  op(opType: string, inputs: string[], attribute: onnxProto.onnx.IAttributeProto[] = []): string {
    const out = `t${this.counter++}`;
    this.nodes.push({ opType, input: inputs, output: [out], attribute });
    return out;
  }

  build(): Uint8Array {
    const graph = onnx.GraphProto.create({
      name: 'muonscope',
      node: this.nodes,
      input: this.inputs,
      output: this.outputs,
      initializer: this.initializers,
    });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'muonscope',
      opsetImport: [{ domain: '', version: 17 }],
      graph,
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private valueInfo(name: string, dims: number[]): onnxProto.onnx.IValueInfoProto {
    return {
      name,
      type: { tensorType: { elemType: this.elemType, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
    };
  }
}

function transpose(g: GraphBuilder, x: string): string {
  return g.op('Transpose', [x], [{ name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 0] }]);
}

/** X / max(‖X‖_F·safety, eps), as torch.optim.Muon (clamp) and modded-nanogpt (safety) do. */
function normalizeFrobenius(g: GraphBuilder, x: string, eps: number, normSafety: number): string {
  const norm = g.op('Sqrt', [g.op('ReduceSumSquare', [x], [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }])]);
  const scaled = normSafety === 1 ? norm : g.op('Mul', [norm, g.scalar(normSafety)]);
  return g.op('Div', [x, g.op('Max', [scaled, g.scalar(eps)])]);
}

/** One quintic step X ← a·X + (b·A + c·A·A)·X with A = X·Xᵀ (given, or formed); X is short-side-first. */
function nsStep(g: GraphBuilder, x: string, [a, b, c]: NsStep, gram?: string): string {
  const gramA = gram ?? g.op('MatMul', [x, transpose(g, x)]);
  const poly = g.op('Add', [g.op('Mul', [gramA, g.scalar(b)]), g.op('Mul', [g.op('MatMul', [gramA, gramA]), g.scalar(c)])]);
  return g.op('Add', [g.op('Mul', [x, g.scalar(a)]), g.op('MatMul', [poly, x])]);
}

/** Transposes a wide-first matrix to short-side-first; applied again, it restores the orientation. */
function shortSideFirst(g: GraphBuilder, x: string, rows: number, cols: number): string {
  return rows > cols ? transpose(g, x) : x;
}

export interface NsGraphSpec {
  rows: number;
  cols: number;
  steps: readonly NsStep[];
  eps: number;
  normSafety: number;
}

/**
 * Muon's whole step. Inputs W, G, B (rows×cols) and the scalars mu, decay = 1 − lr·wd and
 * step = lr·scale, so one session serves every learning rate. Outputs W', B' and O.
 */
export function buildMuonStepGraph(spec: NsGraphSpec & { nesterov: boolean }): Uint8Array {
  const { rows, cols } = spec;
  const g = new GraphBuilder(FLOAT);
  const w = g.input('W', [rows, cols]);
  const grad = g.input('G', [rows, cols]);
  const buf = g.input('B', [rows, cols]);
  const mu = g.input('mu', []);
  const decay = g.input('decay', []);
  const stepSize = g.input('step', []);
  // torch: buf.lerp_(grad, 1 − μ) and update = grad.lerp(buf, μ).
  const one = g.scalar(1);
  const newBuf = g.op('Add', [buf, g.op('Mul', [g.op('Sub', [one, mu]), g.op('Sub', [grad, buf])])]);
  const u = spec.nesterov ? g.op('Add', [grad, g.op('Mul', [mu, g.op('Sub', [newBuf, grad])])]) : newBuf;
  let x = normalizeFrobenius(g, shortSideFirst(g, u, rows, cols), spec.eps, spec.normSafety);
  for (const s of spec.steps) x = nsStep(g, x, s);
  const o = shortSideFirst(g, x, rows, cols);
  const newW = g.op('Sub', [g.op('Mul', [w, decay]), g.op('Mul', [o, stepSize])]);
  g.output(newW, 'W_out', [rows, cols]);
  g.output(newBuf, 'B_out', [rows, cols]);
  g.output(o, 'O', [rows, cols]);
  return g.build();
}

export function buildOrthogonalizeGraph(spec: NsGraphSpec): Uint8Array {
  const { rows, cols } = spec;
  const g = new GraphBuilder(FLOAT);
  let x = normalizeFrobenius(g, shortSideFirst(g, g.input('X', [rows, cols]), rows, cols), spec.eps, spec.normSafety);
  for (const s of spec.steps) x = nsStep(g, x, s);
  g.output(shortSideFirst(g, x, rows, cols), 'O', [rows, cols]);
  return g.build();
}

/** A fixed start vector for power iteration: deterministic, and with no sign pattern to be orthogonal to. */
function powerStartVector(g: GraphBuilder, m: number): string {
  const name = `v${m}`;
  const values = Array.from({ length: m }, (_, i) => 1 + 0.5 * Math.sin(12.9898 * (i + 1)));
  g.initializer({ name, dims: [m, 1], dataType: FLOAT, floatData: values });
  return name;
}

/**
 * σ_max² of X as the Rayleigh quotient after `iterations` power steps on A = X·Xᵀ (m×m, so each step
 * costs m² instead of 2mn). Power iteration approaches from below; callers add a margin.
 */
function largestEigenvalue(g: GraphBuilder, gram: string, m: number, iterations: number): string {
  const keep = [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }];
  let v = powerStartVector(g, m);
  for (let i = 0; i < iterations; i++) {
    const w = g.op('MatMul', [gram, v]);
    v = g.op('Div', [w, g.op('Max', [g.op('Sqrt', [g.op('ReduceSumSquare', [w], keep)]), g.scalar(1e-30)])]);
  }
  return g.op('ReduceSum', [g.op('Mul', [v, g.op('MatMul', [gram, v])])], keep);
}

export interface NsCombinationGraphSpec {
  rows: number;
  cols: number;
  steps: readonly NsStep[];
  /** Estimate σ_max in the graph (then the inputs are X, weights, margin) instead of taking a divisor. */
  powerIterations: number | null;
}

/**
 * Σ_k w_k·X_k over the Newton–Schulz iterates of X_0 = X/divisor, the divisor given or σ_max·margin.
 * The weights are an input (they change with p every step), so one session per shape and step count
 * serves every p.
 */
export function buildNsCombinationGraph(spec: NsCombinationGraphSpec): Uint8Array {
  const { rows, cols, steps } = spec;
  const m = Math.min(rows, cols);
  const g = new GraphBuilder(FLOAT);
  const xs = shortSideFirst(g, g.input('X', [rows, cols]), rows, cols);
  const weights = g.input('weights', [steps.length + 1]);
  let x: string;
  let firstGram: string | undefined;
  if (spec.powerIterations === null) {
    x = g.op('Div', [xs, g.input('divisor', [])]);
  } else {
    const margin = g.input('margin', []);
    const rawGram = g.op('MatMul', [xs, transpose(g, xs)]);
    const lambda = largestEigenvalue(g, rawGram, m, spec.powerIterations);
    // A zero matrix has σ_max = 0; the floor keeps 0/0 out and the result zero.
    const divisor = g.op('Max', [g.op('Mul', [g.op('Sqrt', [lambda]), margin]), g.scalar(1e-30)]);
    x = g.op('Div', [xs, divisor]);
    // Divide twice: d² underflows float32 for tiny d.
    firstGram = g.op('Div', [g.op('Div', [rawGram, divisor]), divisor]);
  }
  const weight = (k: number) => g.op('Gather', [weights, g.index(k)]);
  let sum = g.op('Mul', [x, weight(0)]);
  steps.forEach((s, k) => {
    x = nsStep(g, x, s, k === 0 ? firstGram : undefined);
    sum = g.op('Add', [sum, g.op('Mul', [x, weight(k + 1)])]);
  });
  g.output(shortSideFirst(g, sum, rows, cols), 'Y', [rows, cols]);
  return g.build();
}

export function buildMatmulGraph(m: number, k: number, n: number, type: ElementType = 'float32'): Uint8Array {
  const g = new GraphBuilder(type === 'float64' ? DOUBLE : FLOAT);
  g.output(g.op('MatMul', [g.input('A', [m, k]), g.input('B', [k, n])]), 'C', [m, n]);
  return g.build();
}

/** The short-side Gram matrix: X·Xᵀ when rows ≤ cols, else Xᵀ·X. */
export function buildGramGraph(rows: number, cols: number, type: ElementType = 'float32'): Uint8Array {
  const g = new GraphBuilder(type === 'float64' ? DOUBLE : FLOAT);
  const x = shortSideFirst(g, g.input('X', [rows, cols]), rows, cols);
  const side = Math.min(rows, cols);
  g.output(g.op('MatMul', [x, transpose(g, x)]), 'A', [side, side]);
  return g.build();
}

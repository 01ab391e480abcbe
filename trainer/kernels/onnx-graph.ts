/**
 * Builds the optimizer's small ONNX graphs in memory (no Python, no files): a tiny builder over
 * onnx-proto plus one function per kernel. Every graph has fixed input shapes, so onnxruntime can plan
 * its buffers once per (kind, shape, coefficients) and reuse the session for every step.
 */
import onnxProto from 'onnx-proto';
import { muonUpdate, type UpdateAlgebra } from '../linalg/muon-update.js';
import type { NsStep } from '../linalg/ns-coefficients.js';
import { nsCombination, orthogonalize, shortSideFirst, type NsAlgebra, type NsSpec } from '../linalg/ns-iteration.js';

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
    return this.constant([value], []);
  }

  /** A constant tensor of the graph's element type. */
  constant(values: readonly number[], dims: number[]): string {
    const name = `k${this.counter++}`;
    const tensor: onnxProto.onnx.ITensorProto = { name, dims, dataType: this.elemType };
    if (this.elemType === DOUBLE) tensor.doubleData = [...values];
    else tensor.floatData = [...values];
    this.initializers.push(tensor);
    return name;
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

const KEEPDIMS_0 = [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }];

/** The Newton–Schulz operations (linalg/ns-iteration.ts) as nodes: matrices and scalars are value names. */
function nsAlgebra(g: GraphBuilder): NsAlgebra<string, string> {
  const transpose = (x: string) => g.op('Transpose', [x], [{ name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 0] }]);
  return {
    constant: (value) => g.scalar(value),
    constantColumn: (values) => g.constant(values, [values.length, 1]),
    transpose,
    gram: (x) => g.op('MatMul', [x, transpose(x)]),
    matmul: (a, b) => g.op('MatMul', [a, b]),
    add: (a, b) => g.op('Add', [a, b]),
    scale: (x, s) => g.op('Mul', [x, s]),
    divide: (x, s) => g.op('Div', [x, s]),
    norm: (x) => g.op('Sqrt', [g.op('ReduceSumSquare', [x], KEEPDIMS_0)]),
    dot: (a, b) => g.op('ReduceSum', [g.op('Mul', [a, b])], KEEPDIMS_0),
    sqrt: (s) => g.op('Sqrt', [s]),
    mulScalars: (a, b) => g.op('Mul', [a, b]),
    maxScalars: (a, b) => g.op('Max', [a, b]),
  };
}

/** Muon's update (linalg/muon-update.ts) as nodes; μ, decay and step size are graph inputs. */
function updateAlgebra(g: GraphBuilder): UpdateAlgebra<string, string> {
  return {
    lerp: (a, b, w) => g.op('Add', [a, g.op('Mul', [w, g.op('Sub', [b, a])])]),
    oneMinus: (s) => g.op('Sub', [g.scalar(1), s]),
    scale: (x, s) => g.op('Mul', [x, s]),
    subScaled: (a, b, s) => g.op('Sub', [a, g.op('Mul', [b, s])]),
  };
}

export interface NsGraphSpec extends NsSpec {
  rows: number;
  cols: number;
}

/**
 * Muon's whole step. Inputs W, G, B (rows×cols) and the scalars mu, decay = 1 − lr·wd and
 * step = lr·scale, so one session serves every learning rate. Outputs W', B' and O.
 */
export function buildMuonStepGraph(spec: NsGraphSpec & { nesterov: boolean }): Uint8Array {
  const { rows, cols } = spec;
  const g = new GraphBuilder(FLOAT);
  const ns = nsAlgebra(g);
  const out = muonUpdate(updateAlgebra(g), (u) => orthogonalize(ns, u, rows, cols, spec), {
    weight: g.input('W', [rows, cols]),
    grad: g.input('G', [rows, cols]),
    buffer: g.input('B', [rows, cols]),
    momentum: g.input('mu', []),
    nesterov: spec.nesterov,
    decay: g.input('decay', []),
    stepSize: g.input('step', []),
  });
  g.output(out.weight, 'W_out', [rows, cols]);
  g.output(out.buffer, 'B_out', [rows, cols]);
  g.output(out.update, 'O', [rows, cols]);
  return g.build();
}

export function buildOrthogonalizeGraph(spec: NsGraphSpec): Uint8Array {
  const { rows, cols } = spec;
  const g = new GraphBuilder(FLOAT);
  g.output(orthogonalize(nsAlgebra(g), g.input('X', [rows, cols]), rows, cols, spec), 'O', [rows, cols]);
  return g.build();
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
  const g = new GraphBuilder(FLOAT);
  const x = g.input('X', [rows, cols]);
  const weightsInput = g.input('weights', [steps.length + 1]);
  const weights = Array.from({ length: steps.length + 1 }, (_, k) => g.op('Gather', [weightsInput, g.index(k)]));
  const scaling =
    spec.powerIterations === null ? { divisor: g.input('divisor', []) } : { sigmaMargin: g.input('margin', []), powerIterations: spec.powerIterations };
  g.output(nsCombination(nsAlgebra(g), x, rows, cols, steps, weights, scaling), 'Y', [rows, cols]);
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
  const ns = nsAlgebra(g);
  const side = Math.min(rows, cols);
  g.output(ns.gram(shortSideFirst(ns, g.input('X', [rows, cols]), rows, cols)), 'A', [side, side]);
  return g.build();
}

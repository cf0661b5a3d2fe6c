import * as tf from '@tensorflow/tfjs-core';

/**
 * tfjs 4.22's backward pass keeps every gradient it computes, and every tensor a kernel saved for
 * it, until the whole pass ends. At full resolution a training step then holds the gradient of
 * every activation at once on top of the saved activations, which is what made the paper's model
 * (F = 48, 96^3) overflow the 4 GiB wasm heap even with the backbone frozen.
 *
 * Once a tape node has turned the gradients of its outputs into those of its inputs, neither is
 * read again in that pass: each output has exactly one producer, and a node's saved tensors are
 * clones made for it alone. This hook wraps every node's gradient so that, when its last input
 * gradient has been taken, the node releases its output gradients and saved tensors. The gradient
 * a caller passed to `gradients()` (as the checkpointed recomputation does) stays the caller's.
 * Backward passes that are themselves recorded (higher-order gradients) are left alone.
 */

interface TapeNode {
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
}

interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number; kernelDepth: number };
  addTapeNode(...args: unknown[]): void;
  gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean): unknown;
}

const hooked = new WeakSet<object>();
let enabled = true;
/** The inputs (by name) whose gradients the node being differentiated must give; unknown outside a pass. */
let wantedInputs: ReadonlySet<string> | undefined;

/**
 * For a custom op's gradient function: whether the backward pass will read the gradient of its
 * input number `index`. tfjs prunes inputs that no trained tensor reaches (a frozen weight, a
 * cached feature map) but custom ops return every gradient at once; they may give a placeholder
 * for the others instead of computing them (a convolution's input gradient is as costly as its
 * forward pass). True when unknown.
 */
export function inputGradientWanted(index: number): boolean {
  return wantedInputs?.has(String(index)) ?? true;
}

/** Tensors a running gradients() call differentiates with respect to (its xs), with call counts. */
const sources = new Map<tf.Tensor, number>();
/** Outputs of recorded ops with an input that requires a gradient. */
let derived = new WeakSet<tf.Tensor>();

/**
 * Whether a gradient being recorded will reach `tensor`'s computation: it is one of the xs of a
 * running gradients() call (a trained variable, a checkpoint's input) or was computed from one
 * under the tape (PyTorch's requires_grad). True when the hook is not installed.
 */
export function requiresGradient(tensor: tf.Tensor): boolean {
  if (!hooked.has(tf.engine())) return true;
  return sources.has(tensor) || derived.has(tensor);
}

/**
 * Runs `fn` without recording it on the tape, as tfjs does inside a kernel: for work no gradient
 * reaches (a frozen block on constant inputs), whose saved tensors would otherwise stay until the
 * pass ends.
 */
export function untaped<T>(fn: () => T): T {
  const state = (tf.engine() as unknown as EngineInternals).state;
  state.kernelDepth++;
  try {
    return fn();
  } finally {
    state.kernelDepth--;
  }
}

/** Placeholder gradient for an input the pass does not read (never seen by tfjs's shape check). */
export function unwantedGradient(): tf.Tensor {
  return tf.zeros([]);
}

/** Installs the hook on tfjs's engine (idempotent; the engine is one per process). */
export function releaseGradientsAsUsed(): void {
  const engine = tf.engine() as unknown as EngineInternals;
  if (hooked.has(engine)) return;
  hooked.add(engine);
  const callerGradients = new Map<tf.Tensor, number>();

  const addTapeNode = engine.addTapeNode;
  engine.addTapeNode = function (this: EngineInternals, ...args: unknown[]): void {
    addTapeNode.apply(this, args);
    const tape = this.state.activeTape;
    const node = tape?.[tape.length - 1];
    if (!node) return;
    if (Object.values(node.inputs).some((t) => t && requiresGradient(t))) for (const output of node.outputs) derived.add(output);
    if (node.gradient) node.gradient = releasing(this, node, node.gradient, callerGradients);
  };

  const gradients = engine.gradients;
  engine.gradients = function (this: EngineInternals, f, xs, dy, allowNoGradients) {
    if (dy) countUp(callerGradients, dy);
    for (const x of xs) countUp(sources, x);
    try {
      return gradients.call(this, f, xs, dy, allowNoGradients);
    } finally {
      for (const x of xs) countDown(sources, x);
      if (sources.size === 0) derived = new WeakSet();
      if (dy) countDown(callerGradients, dy);
    }
  };
}

function countUp(counts: Map<tf.Tensor, number>, tensor: tf.Tensor): void {
  counts.set(tensor, (counts.get(tensor) ?? 0) + 1);
}

function countDown(counts: Map<tf.Tensor, number>, tensor: tf.Tensor): void {
  const left = (counts.get(tensor) ?? 1) - 1;
  if (left === 0) counts.delete(tensor);
  else counts.set(tensor, left);
}

/**
 * For tests and comparisons: runs `fn` with tfjs's own backward pass, the hook off: nothing is
 * released before the pass ends, and custom ops compute every input's gradient.
 */
export function withPlainBackward<T>(fn: () => T): T {
  const before = enabled;
  enabled = false;
  try {
    return fn();
  } finally {
    enabled = before;
  }
}

function releasing(engine: EngineInternals, node: TapeNode, gradient: NonNullable<TapeNode['gradient']>, callerGradients: Map<tf.Tensor, number>): NonNullable<TapeNode['gradient']> {
  // tfjs calls this on a copy of the node whose inputs are pruned to those on the path to the
  // variables: only their gradients are taken, so `this` says how many to wait for.
  return function (this: TapeNode | undefined, dys) {
    const inputs = this?.inputs ?? node.inputs;
    const withWanted = (given: Array<tf.Tensor | null>) => {
      const outer = wantedInputs;
      wantedInputs = new Set(Object.keys(inputs));
      try {
        return gradient(given);
      } finally {
        wantedInputs = outer;
      }
    };
    if (!enabled) return gradient(dys);
    if (engine.state.gradientDepth > 0) return withWanted(dys);
    // tfjs fills the gradient of an output outside the pass with zeros; filling it here makes
    // that tensor ours to release. As a Fill kernel: tf.zeros builds the zeros in JavaScript and
    // copies them in (on wasm 650 ms for a 96^3 x 48 volume, against a fill in the heap).
    const filled = dys.map((dy, i) => dy ?? zerosOf(node.outputs[i]));
    const closures = withWanted(filled);
    const owned = new Set<tf.Tensor>([...filled.filter((dy) => !callerGradients.has(dy)), ...(node.saved ?? [])]);
    const returned = new Set<tf.Tensor>();
    let pending = Object.keys(inputs).length;
    const release = () => {
      for (const tensor of owned) tensor.dispose();
    };
    const wrapped: Record<string, () => tf.Tensor> = {};
    for (const [name, closure] of Object.entries(closures)) {
      wrapped[name] = () => {
        let dx = closure();
        // A gradient passed through unchanged, or handed to two inputs, would be released with
        // this node or with another input's producer: give each input a tensor of its own.
        if (owned.has(dx) || returned.has(dx) || callerGradients.has(dx)) dx = dx.clone();
        returned.add(dx);
        if (name in inputs && --pending === 0) release();
        return dx;
      };
    }
    if (pending === 0) release();
    return wrapped;
  };
}

/** Zeros of a tensor's shape and dtype, from its metadata only (the tensor may be released). */
function zerosOf(output: tf.Tensor): tf.Tensor {
  return output.dtype === 'float32' || output.dtype === 'int32' ? tf.fill(output.shape, 0, output.dtype) : tf.zeros(output.shape, output.dtype);
}

import * as tf from '@tensorflow/tfjs-core';
import { variableOf } from '../networks/ops';
import { adamwFused, fusedAdamWAvailable } from './wasm-adamw';

export interface AdamWOptions {
  learningRate: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Decoupled weight decay (PyTorch AdamW default 0.01). */
  weightDecay?: number;
}

/**
 * AdamW (Loshchilov & Hutter) exactly as PyTorch's torch.optim.AdamW: decoupled weight decay
 * p <- p - lr * wd * p, then the bias-corrected Adam step. The learning rate may change between
 * steps (schedules). On wasm each variable's update is one fused pass (wasm-adamw.ts).
 */
export class AdamW {
  private step = 0;
  private readonly moments = new Map<tf.Variable, { m: tf.Variable; v: tf.Variable }>();
  learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  /** Per-variable multipliers of the learning rate (PyTorch parameter groups); 1 when absent. */
  readonly rateScale = new Map<tf.Variable, number>();

  constructor(options: AdamWOptions) {
    this.learningRate = options.learningRate;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
  }

  /** Applies one update; `gradients` maps each trained variable to its gradient (disposed here). */
  apply(gradients: Map<tf.Variable, tf.Tensor>): void {
    this.step++;
    const correction1 = 1 - this.beta1 ** this.step;
    const correction2 = 1 - this.beta2 ** this.step;
    for (const [variable, gradient] of gradients) {
      const lr = this.learningRate * (this.rateScale.get(variable) ?? 1);
      let state = this.moments.get(variable);
      if (!state) {
        state = { m: variableOf(tf.zerosLike(variable), false), v: variableOf(tf.zerosLike(variable), false) };
        this.moments.set(variable, state);
      }
      const { m, v } = state;
      if (fusedAdamWAvailable(variable) && gradient.dtype === 'float32') {
        const decay = this.weightDecay > 0 ? 1 - lr * this.weightDecay : 1;
        const [p2, m2, v2] = adamwFused(variable, gradient, m, v, { beta1: this.beta1, beta2: this.beta2, decay, stepSize: lr / correction1, correction2, epsilon: this.epsilon });
        variable.assign(p2);
        m.assign(m2);
        v.assign(v2);
        tf.dispose([p2, m2, v2]);
        gradient.dispose();
        continue;
      }
      tf.tidy(() => {
        m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(gradient, 1 - this.beta1)));
        v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(gradient), 1 - this.beta2)));
        const decayed = this.weightDecay > 0 ? tf.mul(variable, 1 - lr * this.weightDecay) : variable;
        const update = tf.div(tf.div(m, correction1), tf.add(tf.sqrt(tf.div(v, correction2)), this.epsilon));
        variable.assign(tf.sub(decayed, tf.mul(update, lr)));
      });
      gradient.dispose();
    }
  }

  /** The step count and moments of each named variable, for checkpoints. */
  async exportState(names: Map<tf.Variable, string>): Promise<{ step: number; tensors: Array<{ name: string; shape: number[]; data: Float32Array }> }> {
    const tensors = [];
    for (const [variable, { m, v }] of this.moments) {
      const name = names.get(variable);
      if (name === undefined) continue;
      tensors.push({ name: `m.${name}`, shape: m.shape, data: (await m.data()) as Float32Array });
      tensors.push({ name: `v.${name}`, shape: v.shape, data: (await v.data()) as Float32Array });
    }
    return { step: this.step, tensors };
  }

  /** Restores a state written by `exportState` (resume after interruption). */
  importState(step: number, tensors: Map<string, { shape: number[]; data: Float32Array }>, variables: Map<string, tf.Variable>): void {
    this.dispose();
    this.step = step;
    for (const [name, variable] of variables) {
      const m = tensors.get(`m.${name}`);
      const v = tensors.get(`v.${name}`);
      if (!m || !v) continue;
      this.moments.set(variable, { m: variableOf(tf.tensor(m.data, m.shape), false), v: variableOf(tf.tensor(v.data, v.shape), false) });
    }
  }

  dispose(): void {
    for (const { m, v } of this.moments.values()) tf.dispose([m, v]);
    this.moments.clear();
  }
}

import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSafetensors, writeSafetensors } from '../io/safetensors';
import { writeFileAtomic } from '../util/atomic-write';
import { readJsonFile } from '../util/read-file';
import { AdamW } from './adamw';

/** What a training run needs to continue after an interruption, next to its weights. */
export interface TrainState {
  /** Epochs finished. */
  epoch: number;
  step: number;
  /** The options the run started with; a resume with other options is refused. */
  options: Record<string, unknown>;
}

const STATE = 'train-state.json';
const OPTIMIZER = 'optimizer.safetensors';

export function readTrainState(dir: string): TrainState | undefined {
  const file = path.join(dir, STATE);
  return fs.existsSync(file) ? (readJsonFile(file) as TrainState) : undefined;
}

/** Writes the optimizer moments, then the state file (last, so it only ever names finished weights). */
export async function writeTrainState(dir: string, state: TrainState, optimizer: AdamW, variables: Map<string, tf.Variable>): Promise<void> {
  const names = new Map([...variables].map(([name, variable]) => [variable, name]));
  const { step, tensors } = await optimizer.exportState(names);
  await writeSafetensors(
    path.join(dir, OPTIMIZER),
    tensors.map((t) => ({ name: t.name, tensor: { dtype: 'float32' as const, shape: t.shape, data: t.data } })),
    { step: String(step) },
  );
  await writeFileAtomic(path.join(dir, STATE), JSON.stringify(state, null, 2));
}

export function restoreOptimizer(dir: string, optimizer: AdamW, variables: Map<string, tf.Variable>): void {
  const file = path.join(dir, OPTIMIZER);
  if (!fs.existsSync(file)) return;
  const { tensors, metadata } = readSafetensors(file);
  const host = new Map([...tensors].map(([name, t]) => [name, { shape: t.shape, data: Float32Array.from(t.data) }]));
  optimizer.importState(Number(metadata.step ?? 0), host, variables);
}

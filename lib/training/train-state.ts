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
const LOG = 'log.jsonl';
/** Committed epochs live in <out>/resume/epoch-N, each complete (weights, optimizer, state, log). */
const RESUME = 'resume';

/** A committed epoch: its state and the directory holding its weights and optimizer moments. */
export interface Checkpoint {
  state: TrainState;
  dir: string;
}

/**
 * The newest committed epoch of a run in `outDir`. A checkpoint directory appears by a rename once
 * all its files are written, so one that exists is complete. Runs written before checkpoints had
 * their own directory kept the state at the top level; those are still found.
 */
export function readCheckpoint(outDir: string): Checkpoint | undefined {
  const resume = path.join(outDir, RESUME);
  const epochs = fs.existsSync(resume)
    ? fs
        .readdirSync(resume)
        .map((name) => /^epoch-(\d+)$/.exec(name))
        .filter((match): match is RegExpExecArray => match !== null)
        .map((match) => Number(match[1]))
        .sort((a, b) => b - a)
    : [];
  if (epochs.length > 0) {
    const dir = path.join(resume, `epoch-${epochs[0]}`);
    return { state: readJsonFile(path.join(dir, STATE)) as TrainState, dir };
  }
  const legacy = path.join(outDir, STATE);
  return fs.existsSync(legacy) ? { state: readJsonFile(legacy) as TrainState, dir: outDir } : undefined;
}

export type CommitStage = 'weights' | 'optimizer' | 'state' | 'log';

export interface EpochCommit {
  state: TrainState;
  optimizer: AdamW;
  variables: Map<string, tf.Variable>;
  /** Every epoch's log line so far (the checkpoint carries the whole log). */
  logLines: string[];
  /** Writes the model (weights and config.json) into a directory. */
  saveModelTo: (dir: string) => Promise<unknown>;
}

/**
 * Commits one epoch in a single step: everything is written into a fresh directory, which is then
 * renamed into place; only after that are older checkpoints removed and the run's top-level model
 * and log (what users load) refreshed from it. An interruption anywhere leaves either the previous
 * or the new epoch committed, never a mixture. `onStage` (for fault tests) runs after each file.
 */
export async function commitEpoch(outDir: string, commit: EpochCommit, onStage?: (stage: CommitStage) => void): Promise<void> {
  const resume = path.join(outDir, RESUME);
  await fs.promises.mkdir(resume, { recursive: true });
  const final = path.join(resume, `epoch-${commit.state.epoch}`);
  const staging = path.join(resume, `.epoch-${commit.state.epoch}.${process.pid}.partial`);
  await fs.promises.rm(staging, { recursive: true, force: true });
  await commit.saveModelTo(staging);
  onStage?.('weights');
  const names = new Map([...commit.variables].map(([name, variable]) => [variable, name]));
  const { step, tensors } = await commit.optimizer.exportState(names);
  await writeSafetensors(
    path.join(staging, OPTIMIZER),
    tensors.map((t) => ({ name: t.name, tensor: { dtype: 'float32' as const, shape: t.shape, data: t.data } })),
    { step: String(step) },
  );
  onStage?.('optimizer');
  await writeFileAtomic(path.join(staging, STATE), JSON.stringify(commit.state, null, 2));
  onStage?.('state');
  const log = commit.logLines.map((line) => line + '\n').join('');
  await writeFileAtomic(path.join(staging, LOG), log);
  onStage?.('log');
  await fs.promises.rm(final, { recursive: true, force: true });
  await fs.promises.rename(staging, final);
  for (const name of await fs.promises.readdir(resume)) {
    const match = /^epoch-(\d+)$/.exec(name) ?? /^\.epoch-(\d+)\.\d+\.partial$/.exec(name);
    if (match && name !== path.basename(final)) await fs.promises.rm(path.join(resume, name), { recursive: true, force: true });
  }
  await commit.saveModelTo(outDir);
  await writeFileAtomic(path.join(outDir, LOG), log);
  await fs.promises.rm(path.join(outDir, STATE), { force: true });
  await fs.promises.rm(path.join(outDir, OPTIMIZER), { force: true });
}

/** The log lines a checkpoint carries (empty for a run without one). */
export function checkpointLog(checkpoint: Checkpoint | undefined): string[] {
  if (!checkpoint) return [];
  const file = path.join(checkpoint.dir, LOG);
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '');
}

export function restoreOptimizer(dir: string, optimizer: AdamW, variables: Map<string, tf.Variable>): void {
  const file = path.join(dir, OPTIMIZER);
  if (!fs.existsSync(file)) return;
  const { tensors, metadata } = readSafetensors(file);
  const host = new Map([...tensors].map(([name, t]) => [name, { shape: t.shape, data: Float32Array.from(t.data) }]));
  optimizer.importState(Number(metadata.step ?? 0), host, variables);
}

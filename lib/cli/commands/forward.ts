import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../backend/backend';
import { readNpy, writeNpy } from '../../io/npy';
import { loadModel } from '../../networks/model-io';
import { FseftError } from '../../util/errors';
import { Options } from '../args';

export const FORWARD_HELP = `fseft forward --model <model dir> --input <x.npy> --output <y.npy> [--features] [--backend B]
  Runs the network on a channels-first array [1, C, D, H, W] (or [C, D, H, W]) and writes the
  logits, or with --features the last decoder features (what adapters consume), channels-first.
  D, H and W must be divisible by 32. --backend tensorflow|wasm|cpu (default: FSEFT_BACKEND or
  the first available).`;

export async function forwardCommand(options: Options): Promise<void> {
  const modelDir = options.string('model');
  const input = options.string('input');
  const output = options.string('output');
  const features = options.flag('features');
  const backend = options.string('backend');
  options.rejectUnknown();
  if (!modelDir || !input || !output) throw new FseftError(`give --model, --input and --output\n${FORWARD_HELP}`);
  await initBackend(backend);
  const array = readNpy(input);
  const shape = array.shape.length === 4 ? [1, ...array.shape] : array.shape.slice();
  if (shape.length !== 5 || shape[0] !== 1) throw new FseftError(`expected a [1, C, D, H, W] or [C, D, H, W] array, got [${array.shape}]`, input);
  const { model } = loadModel(modelDir);
  if (shape[1] !== model.config.inChannels) throw new FseftError(`the array has ${shape[1]} channels, the model expects ${model.config.inChannels}`, input);
  const bad = shape.slice(2).filter((n) => n % 32 !== 0);
  if (bad.length > 0) throw new FseftError(`spatial size ${shape.slice(2).join('x')} must be divisible by 32 on every axis`, input);
  const started = performance.now();
  const ncdhw = shape as [number, number, number, number, number];
  const x = tf.tidy(() => tf.transpose(tf.tensor5d(Float32Array.from(array.data), ncdhw), [0, 2, 3, 4, 1])); // NCDHW -> NDHWC
  const result = model.forward(x);
  const chosen = features ? result.features : result.logits;
  const channelsFirst = tf.transpose(chosen, [0, 4, 1, 2, 3]);
  const data = (await channelsFirst.data()) as Float32Array;
  const seconds = (performance.now() - started) / 1000;
  await writeNpy(output, { dtype: 'float32', shape: channelsFirst.shape, data });
  tf.dispose([x, result.logits, result.features, channelsFirst]);
  model.dispose();
  console.log(`${features ? 'features' : 'logits'} [${channelsFirst.shape.join(', ')}] -> ${output} (${seconds.toFixed(2)} s)`);
}

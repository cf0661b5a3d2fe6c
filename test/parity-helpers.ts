import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BackendName, switchBackend } from '../lib/backend/backend';
import { readNpy } from '../lib/io/npy';
import { importTorchCheckpoint } from '../lib/networks/import-torch';
import { FIXTURE_DIR } from './helpers';

/** Imports the MONAI fixture and checks logits, hidden states and decoder features on a backend. */
export async function checkParity(backend: BackendName, tolerance = 1e-3): Promise<Record<string, number>> {
  await switchBackend(backend);
  const { model, report } = importTorchCheckpoint(path.join(FIXTURE_DIR, 'swinunetr_f12_r64.pt'));
  assert.equal(report.loaded.length, 151);
  assert.deepEqual(report.missing, []);
  assert.deepEqual(report.unexpected, []);
  const input = readNpy(path.join(FIXTURE_DIR, 'input.npy'));
  const x = tf.transpose(tf.tensor5d(input.data as Float32Array, input.shape as [number, number, number, number, number]), [0, 2, 3, 4, 1]) as tf.Tensor5D;
  const out = model.forward(x, { hiddenStates: true });
  const errors: Record<string, number> = {};
  const compare = async (file: string, tensor: tf.Tensor) => {
    const reference = readNpy(path.join(FIXTURE_DIR, file)).data;
    const ours = (await tf.transpose(tensor, [0, 4, 1, 2, 3]).data()) as Float32Array;
    assert.equal(ours.length, reference.length, file);
    let worst = 0;
    for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i] - reference[i]));
    errors[file] = worst;
  };
  for (let i = 0; i < 5; i++) await compare(`swinvit_hidden${i}.npy`, out.hidden![i]);
  await compare('decoder1_features.npy', out.features);
  await compare('logits.npy', out.logits);
  for (const [file, error] of Object.entries(errors)) assert.ok(error <= tolerance, `${backend} ${file}: max abs error ${error}`);
  model.dispose();
  return errors;
}

import * as tf from '@tensorflow/tfjs-core';
import { Adapter } from '../adapters/adapters';
import { Shape3, Volume } from '../io/volume';
import { largestComponentPerLabel, largestConnectedComponent } from '../metrics/components';
import { FeatureGrid, cropGrid, gridChannelToVolumeData, volumeToGrid } from '../networks/volume-tensor';
import { BackboneFeatures } from './features';
import { slidingWindow } from './sliding-window';

export interface SegmentOptions {
  roi: Shape3;
  overlap?: number;
  onWindow?: (done: number, total: number) => void;
}

/**
 * Organ probabilities [X, Y, Z, 1] of a preprocessed volume by Gaussian-blended sliding windows:
 * over cached backbone features for frozen-backbone methods, over the image for FT and Scratch.
 * A multi-class head gives [X, Y, Z, organs + 1] softmax probabilities, background first.
 */
export function adapterProbabilities(adapter: Adapter, inputs: { image?: Volume; features?: BackboneFeatures }, options: SegmentOptions): FeatureGrid {
  const windowOptions = { roi: options.roi, overlap: options.overlap, onWindow: options.onWindow };
  const outputs = [{ channels: adapter.outputChannels, scale: 1 as const }];
  if (adapter.input === 'image') {
    if (!inputs.image) throw new Error('FT and Scratch predict from the image');
    return slidingWindow(volumeToGrid(inputs.image), outputs, (window) => [tf.tidy(() => adapter.activate(adapter.forward({ image: window })))], windowOptions)[0];
  }
  const features = inputs.features;
  if (!features) throw new Error('frozen-backbone methods predict from backbone features');
  if (adapter.input === 'features') {
    return slidingWindow(features.features, outputs, (window) => [tf.tidy(() => adapter.activate(adapter.forward({ features: window })))], windowOptions)[0];
  }
  if (!features.dec0 || !features.enc0) throw new Error('FT-Last needs the decoder inputs (computed with decoderInputs)');
  const half = options.roi.map((n) => n / 2) as Shape3;
  return slidingWindow(
    features.enc0,
    outputs,
    (window, start) =>
      [
        tf.tidy(() => {
          const dec0 = cropGrid(features.dec0!, start.map((s) => s / 2) as Shape3, half);
          return adapter.activate(adapter.forward({ enc0: window, dec0 }));
        }),
      ],
    { ...windowOptions, evenStarts: true },
  )[0];
}

/** The paper's post-processing: threshold (0.5) and the largest 26-connected component, as a uint8 mask volume. */
export function probabilitiesToMask(probabilities: FeatureGrid, like: Volume, threshold = 0.5, largestComponent = true): Volume<Uint8Array> {
  const values = gridChannelToVolumeData(probabilities);
  const binary = Uint8Array.from(values, (p) => (p > threshold ? 1 : 0));
  return like.withData(largestComponent ? largestConnectedComponent(binary, like.shape, 26) : binary);
}

/** Probabilities as a float32 volume on the grid of `like`. */
export function probabilitiesToVolume(probabilities: FeatureGrid, like: Volume): Volume<Float32Array> {
  return like.withData(gridChannelToVolumeData(probabilities));
}

/**
 * A multi-class head's labels: each voxel takes its most probable channel (0 background, c organ c),
 * and each organ keeps its largest 26-connected component (unless `largestComponent` is false).
 */
export function probabilitiesToLabels(probabilities: FeatureGrid, like: Volume, largestComponent = true): Volume<Uint8Array> {
  const channels = probabilities.channels;
  const voxels = probabilities.data.length / channels;
  const winner = new Uint8Array(voxels);
  for (let v = 0; v < voxels; v++) {
    let best = 0;
    for (let c = 1; c < channels; c++) if (probabilities.data[v * channels + c] > probabilities.data[v * channels + best]) best = c;
    winner[v] = best;
  }
  const grid = gridChannelToVolumeData({ data: Float32Array.from(winner), shape: probabilities.shape, channels: 1 });
  const labels = Uint8Array.from(grid);
  return like.withData(largestComponent ? largestComponentPerLabel(labels, like.shape, channels - 1) : labels);
}

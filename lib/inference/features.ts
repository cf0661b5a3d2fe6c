import { Shape3, Volume } from '../io/volume';
import { SwinUNETR } from '../networks/swin-unetr';
import { FeatureGrid, volumeToGrid } from '../networks/volume-tensor';
import { WindowOutput, slidingWindow } from './sliding-window';

/** What the frozen backbone gives for one preprocessed volume, in network layout. */
export interface BackboneFeatures {
  /** Last decoder features [X, Y, Z, F]: the input of the output head and of adapters. */
  features: FeatureGrid;
  /** Inputs of the last decoder block, for FT-Last: dec0 at half resolution, enc0 at full. */
  dec0?: FeatureGrid;
  enc0?: FeatureGrid;
  seconds: number;
}

export interface FeatureOptions {
  roi: Shape3;
  overlap?: number;
  decoderInputs?: boolean;
  onWindow?: (done: number, total: number) => void;
}

/**
 * Runs the backbone once over a whole preprocessed volume by Gaussian-blended sliding windows
 * and keeps its features on the host. Frozen-backbone methods (linear probe, adapters, FT-Last,
 * TI) train and predict from these instead of running the backbone at every step.
 */
export function backboneFeatures(model: SwinUNETR, image: Volume, options: FeatureOptions): BackboneFeatures {
  const started = Date.now();
  const f = model.config.featureSize;
  const outputs: WindowOutput[] = [{ channels: f, scale: 1 }];
  if (options.decoderInputs) outputs.push({ channels: f, scale: 2 }, { channels: f, scale: 1 });
  const grids = slidingWindow(
    volumeToGrid(image),
    outputs,
    (window) => {
      const out = model.forward(window, { decoderInputs: options.decoderInputs });
      out.logits.dispose();
      return options.decoderInputs ? [out.features, out.dec0!, out.enc0!] : [out.features];
    },
    // Even starts whether or not the decoder inputs are asked for, so that every method sees the same features.
    { roi: options.roi, overlap: options.overlap, onWindow: options.onWindow, evenStarts: true },
  );
  const result: BackboneFeatures = { features: grids[0], seconds: (Date.now() - started) / 1000 };
  if (options.decoderInputs) Object.assign(result, { dec0: grids[1], enc0: grids[2] });
  return result;
}

/** Bytes held by cached features. */
export function featureBytes(features: BackboneFeatures): number {
  return [features.features, features.dec0, features.enc0].reduce((sum, g) => sum + (g ? g.data.byteLength : 0), 0);
}

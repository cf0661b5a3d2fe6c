import * as tf from '@tensorflow/tfjs-core';
import { checkpointedStep, depthToSpace2, linear, recordingGradients } from './ops';
import { ParamSpec } from './parameters';
import { ParamReader } from './swin-blocks';
import { BlockInput, unetResBlock } from './unet-res-block';

/**
 * The convolutional modules of MONAI's SwinUNETR (monai.networks.blocks), each owning its
 * parameters under its state-dict prefix, as the Swin modules in swin-blocks.ts do.
 */

/** MONAI UnetResBlock (inside UnetrBasicBlock as `.layer`, inside UnetrUpBlock as `.conv_block`). */
export class UnetResBlockModule {
  readonly specs: ParamSpec[];
  private readonly projected: boolean;

  constructor(
    readonly prefix: string,
    inChannels: number,
    outChannels: number,
  ) {
    this.projected = inChannels !== outChannels;
    this.specs = [
      { name: `${prefix}conv1.conv.weight`, torchShape: [outChannels, inChannels, 3, 3, 3], kind: 'conv3d', init: 'kaimingUniform', fanIn: inChannels * 27 },
      { name: `${prefix}conv2.conv.weight`, torchShape: [outChannels, outChannels, 3, 3, 3], kind: 'conv3d', init: 'kaimingUniform', fanIn: outChannels * 27 },
    ];
    if (this.projected) this.specs.push({ name: `${prefix}conv3.conv.weight`, torchShape: [outChannels, inChannels, 1, 1, 1], kind: 'conv1x1', init: 'kaimingUniform', fanIn: inChannels });
  }

  /** `segments`: checkpoint each convolution inside the block while training (see unetResBlock). */
  forward(x: BlockInput, param: ParamReader, segments = false): tf.Tensor5D {
    const p = this.prefix;
    return unetResBlock(x, { conv1: param(`${p}conv1.conv.weight`), conv2: param(`${p}conv2.conv.weight`), conv3: this.projected ? param(`${p}conv3.conv.weight`) : undefined }, 3, segments);
  }
}

/** MONAI UnetrUpBlock: transposed conv (kernel 2, stride 2), concatenation with the skip, UnetResBlock. */
export class UnetrUpBlock {
  readonly specs: ParamSpec[];
  readonly convBlock: UnetResBlockModule;

  constructor(
    readonly prefix: string,
    inChannels: number,
    outChannels: number,
  ) {
    this.convBlock = new UnetResBlockModule(`${prefix}conv_block.`, 2 * outChannels, outChannels);
    this.specs = [
      { name: `${prefix}transp_conv.conv.weight`, torchShape: [inChannels, outChannels, 2, 2, 2], kind: 'convTranspose2', init: 'kaimingUniform', fanIn: outChannels * 8 },
      ...this.convBlock.specs,
    ];
  }

  forward(x: tf.Tensor5D, skip: tf.Tensor5D, param: ParamReader, segments = false): tf.Tensor5D {
    const weight = param(`${this.prefix}transp_conv.conv.weight`);
    const upsample = (t: tf.Tensor, w: tf.Tensor) => depthToSpace2(linear(t, w as tf.Tensor2D) as tf.Tensor5D);
    // The upsampled features and the skip go into the block as two parts (see BlockInput).
    if (segments && recordingGradients()) {
      // Upsampling as one checkpointed segment: the tape keeps only its output.
      const upsampled = checkpointedStep(([t], [w]) => upsample(t, w), [x], [weight]);
      return this.convBlock.forward([upsampled as tf.Tensor5D, skip], param, true);
    }
    const upsampled = upsample(x, weight);
    const out = this.convBlock.forward([upsampled, skip], param);
    // Inference too keeps the parts: joining them cost more (tfjs-wasm's Concat of the two
    // 96^3 x 48 halves took 0.4-1.2 s) than a second convolution's sum (F = 48 forward 11.44 ->
    // 11.18 s). Without a tape nothing else holds the upsampled half.
    if (!recordingGradients()) upsampled.dispose();
    return out;
  }
}

/** MONAI UnetOutBlock: a 1x1x1 convolution with bias to the output channels. */
export class UnetOutBlock {
  readonly specs: ParamSpec[];

  constructor(
    readonly prefix: string,
    inChannels: number,
    outChannels: number,
  ) {
    this.specs = [
      { name: `${prefix}conv.conv.weight`, torchShape: [outChannels, inChannels, 1, 1, 1], kind: 'conv1x1', init: 'kaimingUniform', fanIn: inChannels },
      { name: `${prefix}conv.conv.bias`, torchShape: [outChannels], kind: 'vector', init: 'convBias', fanIn: inChannels },
    ];
  }

  forward(x: tf.Tensor5D, param: ParamReader): tf.Tensor5D {
    return linear(x, param(`${this.prefix}conv.conv.weight`) as tf.Tensor2D, param(`${this.prefix}conv.conv.bias`) as tf.Tensor1D) as tf.Tensor5D;
  }
}

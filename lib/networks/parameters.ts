import * as tf from '@tensorflow/tfjs-core';
import { HostTensor, elementCount, transposeHost } from '../io/host-tensor';
import { Rng } from '../util/random';

/**
 * How a PyTorch parameter is laid out for the channels-last tfjs ops of this kit:
 * - conv3d: Conv3d [out, in, k, k, k] -> [k, k, k, in, out]
 * - conv1x1: Conv3d [out, in, 1, 1, 1] -> matmul weight [in, out]
 * - patchEmbed: Conv3d kernel 2 stride 2 [out, in, 2, 2, 2] -> [(kd, kh, kw, in), out] for `spaceToDepth2`
 * - convTranspose2: ConvTranspose3d [in, out, 2, 2, 2] -> [in, (kd, kh, kw, out)] for `depthToSpace2`
 * - linear: Linear [out, in] -> [in, out]
 * - vector, table: unchanged (biases, norm parameters, relative position bias tables)
 */
export type ParamKind = 'conv3d' | 'conv1x1' | 'patchEmbed' | 'convTranspose2' | 'linear' | 'vector' | 'table';

export type ParamInit = 'kaimingUniform' | 'convBias' | 'truncNormal02' | 'zeros' | 'ones';

export interface ParamSpec {
  /** MONAI state-dict key. */
  name: string;
  /** Shape in the PyTorch state dict. */
  torchShape: number[];
  kind: ParamKind;
  init: ParamInit;
  /** Fan-in for Kaiming-uniform bounds (PyTorch's default layer initialisation). */
  fanIn?: number;
}

export function toKitLayout(spec: ParamSpec, torch: HostTensor): HostTensor {
  const s = spec.torchShape;
  switch (spec.kind) {
    case 'conv3d':
      return transposeHost(torch, [2, 3, 4, 1, 0]);
    case 'conv1x1':
      return transposeHost({ ...torch, shape: [s[0], s[1]] }, [1, 0]);
    case 'patchEmbed': {
      const moved = transposeHost(torch, [2, 3, 4, 1, 0]);
      return { ...moved, shape: [8 * s[1], s[0]] };
    }
    case 'convTranspose2': {
      const moved = transposeHost(torch, [0, 2, 3, 4, 1]);
      return { ...moved, shape: [s[0], 8 * s[1]] };
    }
    case 'linear':
      return transposeHost(torch, [1, 0]);
    default:
      return torch;
  }
}

export function toTorchLayout(spec: ParamSpec, kit: HostTensor): HostTensor {
  const s = spec.torchShape;
  switch (spec.kind) {
    case 'conv3d':
      return transposeHost(kit, [4, 3, 0, 1, 2]);
    case 'conv1x1':
      return { ...transposeHost(kit, [1, 0]), shape: s.slice() };
    case 'patchEmbed':
      return transposeHost({ ...kit, shape: [2, 2, 2, s[1], s[0]] }, [4, 3, 0, 1, 2]);
    case 'convTranspose2':
      return transposeHost({ ...kit, shape: [s[0], 2, 2, 2, s[1]] }, [0, 4, 1, 2, 3]);
    case 'linear':
      return transposeHost(kit, [1, 0]);
    default:
      return kit;
  }
}

export function kitShape(spec: ParamSpec): number[] {
  const s = spec.torchShape;
  switch (spec.kind) {
    case 'conv3d':
      return [s[2], s[3], s[4], s[1], s[0]];
    case 'conv1x1':
      return [s[1], s[0]];
    case 'patchEmbed':
      return [8 * s[1], s[0]];
    case 'convTranspose2':
      return [s[0], 8 * s[1]];
    case 'linear':
      return [s[1], s[0]];
    default:
      return s.slice();
  }
}

/** PyTorch's default initialisation of each parameter kind, drawn from a seeded generator (torch layout). */
export function initialValue(spec: ParamSpec, rng: Rng): HostTensor {
  const count = elementCount(spec.torchShape);
  const data = new Float32Array(count);
  const bound = spec.fanIn ? 1 / Math.sqrt(spec.fanIn) : 0;
  for (let i = 0; i < count; i++) {
    switch (spec.init) {
      case 'kaimingUniform':
      case 'convBias':
        data[i] = rng.uniform(-bound, bound);
        break;
      case 'truncNormal02':
        // trunc_normal_(std=0.02) truncates at +-2 absolute, 100 standard deviations: a plain normal.
        data[i] = 0.02 * rng.normal();
        break;
      case 'ones':
        data[i] = 1;
        break;
      default:
        data[i] = 0;
    }
  }
  return { dtype: 'float32', shape: spec.torchShape.slice(), data };
}

/** A named set of trainable tensors in the kit's layout. */
export type ParameterMap = Map<string, tf.Variable>;

export function disposeParameters(params: ParameterMap): void {
  for (const v of params.values()) v.dispose();
  params.clear();
}

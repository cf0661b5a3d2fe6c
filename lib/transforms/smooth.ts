import { Vec3 } from '../io/affine';
import { Volume } from '../io/volume';

/**
 * Separable Gaussian smoothing (MONAI `GaussianSmooth`) with sigma in voxels per array axis,
 * truncated at 3 sigma, edges replicated. Returns a new float32 volume.
 */
export function gaussianSmooth(volume: Volume, sigma: Vec3): Volume<Float32Array> {
  let current = Float32Array.from(volume.data);
  const [nx, ny] = volume.shape;
  const strides = [1, nx, nx * ny];
  for (let axis = 0; axis < 3; axis++) {
    if (!(sigma[axis] > 0.05)) continue;
    const kernel = gaussianKernel(sigma[axis]);
    const radius = (kernel.length - 1) / 2;
    const n = volume.shape[axis];
    const stride = strides[axis];
    const out = new Float32Array(current.length);
    const line = new Float32Array(n);
    const lines = volume.voxelCount / n;
    for (let l = 0; l < lines; l++) {
      // Lines along `axis`: enumerate the start index of each one.
      let start: number;
      if (axis === 0) start = l * nx;
      else if (axis === 1) start = (l % nx) + Math.floor(l / nx) * nx * ny;
      else start = l;
      for (let i = 0; i < n; i++) line[i] = current[start + i * stride];
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (let k = -radius; k <= radius; k++) {
          const j = i + k < 0 ? 0 : i + k >= n ? n - 1 : i + k;
          sum += kernel[k + radius] * line[j];
        }
        out[start + i * stride] = sum;
      }
    }
    current = out;
  }
  return volume.withData(current);
}

function gaussianKernel(sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float32Array(2 * radius + 1);
  let total = 0;
  for (let i = -radius; i <= radius; i++) total += kernel[i + radius] = Math.exp((-i * i) / (2 * sigma * sigma));
  for (let i = 0; i < kernel.length; i++) kernel[i] /= total;
  return kernel;
}

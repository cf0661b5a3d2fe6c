import { Shape3 } from '../io/volume';
import { MaskArray } from './overlap';

/**
 * Connected components of a binary mask with 26-connectivity (or 6), as scipy.ndimage.label /
 * MONAI KeepLargestConnectedComponent. Returns a component id per voxel (0 = background) and the
 * size of each component (index = id).
 */
export function connectedComponents(mask: MaskArray, shape: Shape3, connectivity: 6 | 26 = 26): { labels: Int32Array; sizes: number[] } {
  const [nx, ny, nz] = shape;
  const labels = new Int32Array(nx * ny * nz);
  const sizes = [0];
  const queue = new Int32Array(labels.length);
  const offsets: Array<[number, number, number]> = [];
  for (let dz = -1; dz <= 1; dz++) {
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const steps = Math.abs(dx) + Math.abs(dy) + Math.abs(dz);
        if (steps === 0 || (connectivity === 6 && steps > 1)) continue;
        offsets.push([dx, dy, dz]);
      }
    }
  }
  for (let start = 0; start < labels.length; start++) {
    if (mask[start] === 0 || labels[start] !== 0) continue;
    const id = sizes.length;
    let head = 0;
    let tail = 0;
    queue[tail++] = start;
    labels[start] = id;
    while (head < tail) {
      const v = queue[head++];
      const x = v % nx;
      const y = Math.floor(v / nx) % ny;
      const z = Math.floor(v / (nx * ny));
      for (const [dx, dy, dz] of offsets) {
        const xx = x + dx, yy = y + dy, zz = z + dz;
        if (xx < 0 || yy < 0 || zz < 0 || xx >= nx || yy >= ny || zz >= nz) continue;
        const w = xx + nx * (yy + ny * zz);
        if (mask[w] !== 0 && labels[w] === 0) {
          labels[w] = id;
          queue[tail++] = w;
        }
      }
    }
    sizes.push(tail);
  }
  return { labels, sizes };
}

/** Keeps only the largest connected component (26-connectivity by default); ties keep the first found. */
export function largestConnectedComponent(mask: MaskArray, shape: Shape3, connectivity: 6 | 26 = 26): Uint8Array {
  const { labels, sizes } = connectedComponents(mask, shape, connectivity);
  const out = new Uint8Array(labels.length);
  if (sizes.length === 1) return out;
  let best = 1;
  for (let id = 2; id < sizes.length; id++) if (sizes[id] > sizes[best]) best = id;
  for (let i = 0; i < labels.length; i++) if (labels[i] === best) out[i] = 1;
  return out;
}

/** A label map (0 background, 1..labels) with each label reduced to its largest connected component. */
export function largestComponentPerLabel(labels: Uint8Array, shape: Shape3, count: number, connectivity: 6 | 26 = 26): Uint8Array {
  const out = new Uint8Array(labels.length);
  for (let label = 1; label <= count; label++) {
    const kept = largestConnectedComponent(Uint8Array.from(labels, (v) => (v === label ? 1 : 0)), shape, connectivity);
    for (let i = 0; i < out.length; i++) if (kept[i]) out[i] = label;
  }
  return out;
}

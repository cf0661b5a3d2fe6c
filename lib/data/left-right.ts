import { applyAffine } from '../io/affine';
import { Volume } from '../io/volume';
import { normaliseName, templateClass } from './template';

/** A structure that some datasets label without a side: the template's right and left classes. */
export interface SidedPair {
  right: number;
  left: number;
}

const UNSIDED_NAMES: Record<string, [string, string]> = {
  kidney: ['rkidney', 'lkidney'],
  kidneys: ['rkidney', 'lkidney'],
  lung: ['rlung', 'llung'],
  lungs: ['rlung', 'llung'],
};

/** The template's right and left classes for an unsided name ('kidney', 'lungs'), or undefined. */
export function unsidedPair(name: string): SidedPair | undefined {
  const sides = UNSIDED_NAMES[normaliseName(name)];
  return sides && { right: templateClass(sides[0]), left: templateClass(sides[1]) };
}

/**
 * The reference's `LRDivision`: voxels of an unsided structure (stored as its right class) that lie
 * left of the volume's midline become its left class. The midline is the world x of the array's
 * centre: after RAS orientation and the foreground crop, the body's midline. Returns a new label.
 */
export function splitLeftRight<T extends Uint8Array | Uint16Array>(label: Volume<T>, pairs: readonly SidedPair[]): Volume<T> {
  if (pairs.length === 0) return label;
  const leftOf = new Uint16Array(65536);
  for (const { right, left } of pairs) leftOf[right] = left;
  const [nx, ny, nz] = label.shape;
  const midline = applyAffine(label.affine, [(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])[0];
  const [ax, ay, az, a0] = label.affine[0];
  const out = label.data.slice() as T;
  let o = 0;
  for (let k = 0; k < nz; k++) {
    for (let j = 0; j < ny; j++) {
      const rowX = ay * j + az * k + a0;
      for (let i = 0; i < nx; i++, o++) {
        const left = leftOf[out[o]];
        if (left && rowX + ax * i < midline) out[o] = left;
      }
    }
  }
  return label.withData(out);
}

import { Volume } from '../io/volume';
import { Rng } from '../util/random';

/** The HU window of the paper: [-175, 250] scaled to [0, 1]. */
export const CT_WINDOW: [number, number] = [-175, 250];

/**
 * MONAI `ScaleIntensityRange(a_min, a_max, b_min, b_max, clip)`: maps [aMin, aMax] linearly onto
 * [bMin, bMax], clipping to that range when `clip`. Returns a float32 volume (written in place
 * when the input already is float32 and `inPlace` is set).
 */
export function scaleIntensityRange(
  volume: Volume,
  [aMin, aMax]: [number, number],
  [bMin, bMax]: [number, number] = [0, 1],
  { clip = true, inPlace = false }: { clip?: boolean; inPlace?: boolean } = {},
): Volume<Float32Array> {
  if (!(aMax > aMin)) throw new Error(`invalid intensity window [${aMin}, ${aMax}]: the upper bound must exceed the lower`);
  const source = volume.data;
  const out = inPlace && source instanceof Float32Array ? source : new Float32Array(source.length);
  const scale = (bMax - bMin) / (aMax - aMin);
  const low = Math.min(bMin, bMax);
  const high = Math.max(bMin, bMax);
  for (let i = 0; i < source.length; i++) {
    const v = (source[i] - aMin) * scale + bMin;
    out[i] = clip ? (v < low ? low : v > high ? high : v) : v;
  }
  return volume.withData(out);
}

/** MONAI `RandShiftIntensity(offsets, prob)`: with probability `prob`, adds one offset drawn from [-offset, offset]. */
export function randShiftIntensity(volume: Volume<Float32Array>, rng: Rng, offset = 0.1, prob = 0.2): Volume<Float32Array> {
  if (rng.next() >= prob) return volume;
  const shift = rng.uniform(-offset, offset);
  const out = new Float32Array(volume.data.length);
  for (let i = 0; i < out.length; i++) out[i] = volume.data[i] + shift;
  return volume.withData(out);
}

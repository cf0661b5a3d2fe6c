import { Volume } from '../io/volume';

/** An 8-bit RGB image, row-major, top row first. */
export interface RgbImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

export interface OverlayOptions {
  /** Axial slice index (axis 2 of a RAS volume). */
  slice: number;
  /** Grey-level window of the image values; default [0, 1] (preprocessed CT). */
  window?: [number, number];
  /** RGB of the mask fill; default red. */
  color?: [number, number, number];
  /** Fill opacity 0..1; default 0.5. */
  opacity?: number;
  /** Integer magnification (nearest neighbour); default 2. */
  zoom?: number;
}

/** A mask and the colour it is filled with. */
export interface MaskLayer {
  mask: Volume;
  color: [number, number, number];
}

/**
 * An axial slice of a RAS volume in radiological view (patient right on the left, anterior at
 * the top) with a mask filled in colour on top. Every voxel is drawn (no subsampling).
 */
export function overlaySlice(image: Volume, mask: Volume | undefined, options: OverlayOptions): RgbImage {
  return overlaySliceLayers(image, mask ? [{ mask, color: options.color ?? [230, 30, 30] }] : [], options);
}

/** The same with several masks, each in its colour; where masks overlap, the last one is drawn. */
export function overlaySliceLayers(image: Volume, layers: MaskLayer[], options: OverlayOptions): RgbImage {
  const [nx, ny, nz] = image.shape;
  if (options.slice < 0 || options.slice >= nz) throw new Error(`slice ${options.slice} outside 0..${nz - 1}`);
  for (const { mask } of layers) {
    if (mask.shape.join() !== image.shape.join()) throw new Error(`mask ${mask.shape.join('x')} and image ${image.shape.join('x')} differ in shape`);
  }
  const [low, high] = options.window ?? [0, 1];
  const alpha = options.opacity ?? 0.5;
  const zoom = options.zoom ?? 2;
  const width = nx * zoom;
  const height = ny * zoom;
  const pixels = new Uint8Array(width * height * 3);
  const k = options.slice;
  for (let row = 0; row < height; row++) {
    const j = ny - 1 - Math.floor(row / zoom);
    for (let col = 0; col < width; col++) {
      const i = nx - 1 - Math.floor(col / zoom);
      const index = i + nx * (j + ny * k);
      const grey = Math.max(0, Math.min(1, (image.data[index] - low) / (high - low))) * 255;
      const o = (row * width + col) * 3;
      let color: [number, number, number] | undefined;
      for (const layer of layers) if (layer.mask.data[index] > 0) color = layer.color;
      for (let c = 0; c < 3; c++) pixels[o + c] = Math.round(color ? (1 - alpha) * grey + alpha * color[c] : grey);
    }
  }
  return { width, height, pixels };
}

/** Images tiled in rows (each row left to right) with a gap, on black. */
export function tileImages(rows: RgbImage[][], gap = 4): RgbImage {
  const cellWidth = Math.max(...rows.flat().map((im) => im.width));
  const cellHeight = Math.max(...rows.flat().map((im) => im.height));
  const columns = Math.max(...rows.map((row) => row.length));
  const width = columns * cellWidth + (columns - 1) * gap;
  const height = rows.length * cellHeight + (rows.length - 1) * gap;
  const pixels = new Uint8Array(width * height * 3);
  rows.forEach((row, r) =>
    row.forEach((im, c) => {
      for (let y = 0; y < im.height; y++) {
        const to = ((r * (cellHeight + gap) + y) * width + c * (cellWidth + gap)) * 3;
        pixels.set(im.pixels.subarray(y * im.width * 3, (y + 1) * im.width * 3), to);
      }
    }),
  );
  return { width, height, pixels };
}

/** The axial slice with the most mask voxels (a good slice to show an organ). */
export function largestMaskSlice(mask: Volume): number {
  const [nx, ny, nz] = mask.shape;
  let best = 0;
  let bestCount = -1;
  for (let k = 0; k < nz; k++) {
    let count = 0;
    for (let v = k * nx * ny; v < (k + 1) * nx * ny; v++) if (mask.data[v] > 0) count++;
    if (count > bestCount) [best, bestCount] = [k, count];
  }
  return best;
}

import { Affine, Vec3, applyAffine, invertAffine, parseOrientationCodes } from '../../io/affine';
import { Shape3, Volume } from '../../io/volume';
import { gaussianSmooth } from '../../transforms/smooth';
import { FseftError } from '../../util/errors';
import { Rng } from '../../util/random';
import { templateClass } from '../template';
import { Anatomy, NOVEL_STRUCTURES, NovelStructure, NovelStructureGroup, TISSUES, TISSUE_NAMES, sampleAnatomy } from './anatomy';

/**
 * How one (simulated) hospital acquires its CTs. Domain shifts between institutions are those
 * seen in practice: voxel size and stored orientation, field of view, contrast phase, scanner
 * calibration offset, noise (dose) and reconstruction sharpness.
 */
export interface Institution {
  name: string;
  description: string;
  /** Voxel size along world x, y, z (mm). */
  spacing: Vec3;
  /** Orientation codes of the stored array, e.g. 'RAS', 'LPS'. */
  orientation: string;
  /** Field of view along world x, y, z (mm), centred at (0, 0, zCenter). */
  fov: Vec3;
  zCenter: number;
  /** Contrast enhancement, 0 (unenhanced) to 1 (portal venous). */
  contrast: number;
  huOffset: number;
  noiseSigma: number;
  /** Gaussian blur sigma of the reconstruction (mm). */
  blurMm: number;
}

export const INSTITUTIONS: Record<string, Institution> = {
  source: {
    name: 'source',
    description: 'portal-venous CT, 1.5 x 1.5 x 2 mm, RAS storage, moderate noise',
    spacing: [1.5, 1.5, 2],
    orientation: 'RAS',
    fov: [330, 270, 220],
    zCenter: 30,
    contrast: 1,
    huOffset: 0,
    noiseSigma: 12,
    blurMm: 0.8,
  },
  'site-b': {
    name: 'site-b',
    description: 'late/low-contrast CT, 1 x 1 x 3 mm, LPS storage (DICOM order), noisier, smoother kernel, +20 HU calibration offset',
    spacing: [1, 1, 3],
    orientation: 'LPS',
    fov: [350, 280, 200],
    zCenter: 20,
    contrast: 0.35,
    huOffset: 20,
    noiseSigma: 22,
    blurMm: 1.4,
  },
  'site-c': {
    name: 'site-c',
    description: 'low-dose CT, 1.25 x 1.25 x 1.5 mm, LAS storage, high noise, sharp kernel, -15 HU offset, shorter field of view',
    spacing: [1.25, 1.25, 1.5],
    orientation: 'LAS',
    fov: [300, 250, 170],
    zCenter: 40,
    contrast: 0.8,
    huOffset: -15,
    noiseSigma: 30,
    blurMm: 0.5,
  },
};

export function institutionByName(name: string): Institution {
  const found = INSTITUTIONS[name];
  if (!found) throw new FseftError(`unknown institution '${name}'; known: ${Object.keys(INSTITUTIONS).join(', ')}`);
  return found;
}

export interface PhantomOptions {
  institution?: Institution;
  /** Multiplies the institution's voxel size (2 = half the voxels per axis), for fast demos. */
  spacingScale?: number;
  /** Novel structures to draw and label as well (values NOVEL_STRUCTURES); none by default. */
  structures?: readonly NovelStructureGroup[];
}

export interface Phantom {
  /** HU, int16, in the institution's stored orientation. */
  image: Volume<Int16Array>;
  /** Template classes of every organ in the phantom (the full label). */
  label: Volume<Uint8Array>;
}

/** The grid an institution stores: its orientation, voxel size and field of view. */
export function institutionGrid(institution: Institution, spacingScale = 1): { shape: Shape3; affine: Affine } {
  const axes = parseOrientationCodes(institution.orientation);
  const shape = axes.map(({ worldAxis }) => Math.max(2, Math.round(institution.fov[worldAxis] / (institution.spacing[worldAxis] * spacingScale)))) as Shape3;
  const center: Vec3 = [0, 0, institution.zCenter];
  const affine: Affine = [
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
  ];
  axes.forEach(({ worldAxis, direction }, a) => {
    const step = direction * institution.spacing[worldAxis] * spacingScale;
    affine[worldAxis][a] = step;
    affine[worldAxis][3] = center[worldAxis] - step * ((shape[a] - 1) / 2);
  });
  return { shape, affine };
}

/**
 * A synthetic abdominal CT and its full organ label. This is a simulation: organs are deformed
 * ellipsoids and tubes laid out like adult anatomy with realistic attenuation, not real patients.
 */
export function generatePhantom(rng: Rng, options: PhantomOptions = {}): Phantom {
  const institution = options.institution ?? INSTITUTIONS.source;
  const { shape, affine } = institutionGrid(institution, options.spacingScale ?? 1);
  const anatomy = sampleAnatomy(rng.fork('anatomy'), options.structures);
  const tissue = paintTissues(anatomy, shape, affine);

  const noise = rng.fork('noise');
  const hu = new Float32Array(tissue.length);
  const tissueHu = TISSUE_NAMES.map((name) => {
    const t = TISSUES[name];
    return name === 'air' ? t.hu : t.hu + t.enhancement * institution.contrast + anatomy.huJitter[name] + institution.huOffset;
  });
  const texture = [0, 1].map(() => ({ k: [noise.normal() * 0.05, noise.normal() * 0.05, noise.normal() * 0.05], phase: noise.uniform(0, 6.28) }));
  let o = 0;
  for (let k = 0; k < shape[2]; k++) {
    for (let j = 0; j < shape[1]; j++) {
      const p = applyAffine(affine, [0, j, k]);
      for (let i = 0; i < shape[0]; i++, o++) {
        const x = p[0] + affine[0][0] * i, y = p[1] + affine[1][0] * i, z = p[2] + affine[2][0] * i;
        let value = tissueHu[tissue[o]];
        if (tissue[o] !== 0) for (const w of texture) value += 5 * Math.sin(w.k[0] * x + w.k[1] * y + w.k[2] * z + w.phase);
        hu[o] = value;
      }
    }
  }
  const spacing = [0, 1, 2].map((a) => Math.hypot(affine[0][a], affine[1][a], affine[2][a]));
  const blurred = institution.blurMm > 0 ? gaussianSmooth(new Volume(hu, shape, affine), spacing.map((s) => institution.blurMm / s) as Vec3).data : hu;
  const image = new Int16Array(tissue.length);
  for (let i = 0; i < image.length; i++) {
    const value = Math.round(blurred[i] + noise.normal() * institution.noiseSigma);
    image[i] = value < -1024 ? -1024 : value > 3071 ? 3071 : value;
  }

  const organOf = TISSUE_NAMES.map((name) => {
    const { organ, structure } = TISSUES[name] as { organ?: string; structure?: NovelStructure };
    return organ ? templateClass(organ) : structure ? NOVEL_STRUCTURES[structure] : 0;
  });
  const label = new Uint8Array(tissue.length);
  for (let i = 0; i < label.length; i++) label[i] = organOf[tissue[i]];
  return { image: new Volume(image, shape, affine), label: new Volume(label, shape, affine) };
}

function paintTissues(anatomy: Anatomy, shape: Shape3, affine: Affine): Uint8Array {
  const tissue = new Uint8Array(shape[0] * shape[1] * shape[2]);
  const toIndex = invertAffine(affine);
  for (const region of anatomy.regions) {
    const id = TISSUE_NAMES.indexOf(region.tissue);
    const { low, high } = region.shape;
    const lo = [Infinity, Infinity, Infinity];
    const hi = [-Infinity, -Infinity, -Infinity];
    for (const x of [low[0], high[0]]) for (const y of [low[1], high[1]]) for (const z of [low[2], high[2]]) {
      const index = applyAffine(toIndex, [x, y, z]);
      for (let a = 0; a < 3; a++) {
        lo[a] = Math.min(lo[a], index[a]);
        hi[a] = Math.max(hi[a], index[a]);
      }
    }
    const start = lo.map((v) => Math.max(0, Math.floor(v)));
    const end = hi.map((v, a) => Math.min(shape[a] - 1, Math.ceil(v)));
    for (let k = start[2]; k <= end[2]; k++) {
      for (let j = start[1]; j <= end[1]; j++) {
        let o = start[0] + shape[0] * (j + shape[1] * k);
        const [x0, y0, z0] = applyAffine(affine, [start[0], j, k]);
        const [dx, dy, dz] = [affine[0][0], affine[1][0], affine[2][0]];
        for (let i = 0; i <= end[0] - start[0]; i++, o++) {
          if (region.shape.contains(x0 + dx * i, y0 + dy * i, z0 + dz * i)) tissue[o] = id;
        }
      }
    }
  }
  return tissue;
}

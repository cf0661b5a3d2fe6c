import { Vec3 } from '../../io/affine';
import { Rng } from '../../util/random';
import { TemplateClassName } from '../template';
import { Shape, blob, clipByPlane, ellipticCylinder, shrink, subtract, tube } from './shapes';

/**
 * Tissues of the phantom: unenhanced HU, extra HU at full (portal-venous) contrast, and the
 * template organ they belong to. Values follow typical abdominal CT attenuation.
 */
export const TISSUES = {
  air: { hu: -1000, enhancement: 0 },
  subcutaneousFat: { hu: -105, enhancement: 0 },
  muscle: { hu: 50, enhancement: 10 },
  visceralFat: { hu: -90, enhancement: 0 },
  lung: { hu: -850, enhancement: 0 },
  bowelWall: { hu: 40, enhancement: 30 },
  bowelFluid: { hu: 15, enhancement: 0 },
  bowelAir: { hu: -900, enhancement: 0 },
  liver: { hu: 58, enhancement: 50, organ: 'liver' },
  spleen: { hu: 48, enhancement: 70, organ: 'spleen' },
  kidneyRightCortex: { hu: 35, enhancement: 150, organ: 'rkidney' },
  kidneyRightMedulla: { hu: 30, enhancement: 80, organ: 'rkidney' },
  kidneyLeftCortex: { hu: 35, enhancement: 150, organ: 'lkidney' },
  kidneyLeftMedulla: { hu: 30, enhancement: 80, organ: 'lkidney' },
  gallbladder: { hu: 12, enhancement: 0, organ: 'gall' },
  stomachWall: { hu: 42, enhancement: 45, organ: 'stomach' },
  stomachContent: { hu: 18, enhancement: 0, organ: 'stomach' },
  stomachAir: { hu: -900, enhancement: 0, organ: 'stomach' },
  pancreas: { hu: 42, enhancement: 60, organ: 'pancreas' },
  duodenumWall: { hu: 42, enhancement: 40, organ: 'duodenum' },
  duodenumContent: { hu: 20, enhancement: 0, organ: 'duodenum' },
  esophagus: { hu: 45, enhancement: 20, organ: 'esophagus' },
  esophagusLumen: { hu: -800, enhancement: 0, organ: 'esophagus' },
  aorta: { hu: 45, enhancement: 140, organ: 'aorta' },
  inferiorVenaCava: { hu: 45, enhancement: 100, organ: 'postcava' },
  disc: { hu: 85, enhancement: 0 },
  marrow: { hu: 260, enhancement: 0, organ: 'bone' },
  corticalBone: { hu: 750, enhancement: 0, organ: 'bone' },
  spinalCanal: { hu: 15, enhancement: 0 },
  // Drawn only on request (PhantomOptions.structures): outside the template, so the shipped model
  // never learnt them. Appended last so that the other tissues keep their ids and HU draws.
  psoasRight: { hu: 50, enhancement: 10, structure: 'psoas_right' },
  psoasLeft: { hu: 50, enhancement: 10, structure: 'psoas_left' },
} satisfies Record<string, { hu: number; enhancement: number; organ?: TemplateClassName; structure?: NovelStructure }>;

/**
 * Structures outside the 29-class template that the phantom can draw and label (the reference's
 * novel-structure experiments use muscles, heart chambers and lung lobes): the psoas major muscles,
 * with their label values (above the template's 1-29).
 */
export const NOVEL_STRUCTURES = { psoas_right: 30, psoas_left: 31 } as const;
export type NovelStructure = keyof typeof NOVEL_STRUCTURES;
/** Groups of novel structures a phantom is asked to draw. */
export const NOVEL_STRUCTURE_GROUPS = { psoas: ['psoas_right', 'psoas_left'] } as const satisfies Record<string, readonly NovelStructure[]>;
export type NovelStructureGroup = keyof typeof NOVEL_STRUCTURE_GROUPS;

export type TissueName = keyof typeof TISSUES;
export const TISSUE_NAMES = Object.keys(TISSUES) as TissueName[];

/** A painted region: later regions overwrite earlier ones. */
export interface Region {
  tissue: TissueName;
  shape: Shape;
}

/** One synthetic subject: its regions in paint order and its per-tissue HU deviations. */
export interface Anatomy {
  regions: Region[];
  huJitter: Record<TissueName, number>;
  /** Superior-inferior extent of the modelled trunk (mm). */
  zRange: [number, number];
}

/**
 * Samples one abdominal anatomy in RAS+ millimetres (+x the subject's right, +y anterior, +z
 * superior; z = 0 near the first lumbar vertebra). Body size, organ positions, sizes, shapes and
 * attenuation vary between subjects; the layout follows typical adult anatomy.
 */
export function sampleAnatomy(rng: Rng, structures: readonly NovelStructureGroup[] = []): Anatomy {
  const bx = rng.uniform(140, 172);
  const by = rng.uniform(100, 128);
  const sx = bx / 155;
  const sy = by / 112;
  const sz = rng.uniform(0.9, 1.1);
  const at = (x: number, y: number, z: number, sd = 5): Vec3 => [sx * x + rng.normal() * sd, sy * y + rng.normal() * sd, sz * z + rng.normal() * sd];
  const size = (rx: number, ry: number, rz: number, spread = 0.12): Vec3 => {
    const f = 1 + rng.uniform(-spread, spread);
    return [rx * sx * f, ry * sy * f, rz * sz * f];
  };
  const zRange: [number, number] = [-140, 150];
  const regions: Region[] = [];
  const paint = (tissue: TissueName, shape: Shape) => regions.push({ tissue, shape });

  const fat = rng.uniform(12, 30);
  paint('subcutaneousFat', ellipticCylinder(0, 0, bx, by, zRange[0], zRange[1]));
  paint('muscle', ellipticCylinder(0, 0, bx - fat, by - fat, zRange[0], zRange[1]));
  paint('visceralFat', ellipticCylinder(0, 2, bx - fat - 11, by - fat - 11, zRange[0], zRange[1]));

  for (const side of [1, -1]) paint('lung', blob(at(side * 72, -15, 150), size(62, 72, 70), rng, { wobble: 0.05 }));
  const bowelCount = 5 + rng.int(5);
  for (let i = 0; i < bowelCount; i++) {
    const center = at(rng.uniform(-90, 90), rng.uniform(-10, 60), rng.uniform(-125, -35), 0);
    const path = [center, at(center[0] / sx + rng.uniform(-40, 40), center[1] / sy + rng.uniform(-20, 20), center[2] / sz + rng.uniform(-30, 30), 0)];
    const radius = rng.uniform(10, 18);
    paint('bowelWall', tube(path, radius));
    paint(rng.next() < 0.5 ? 'bowelAir' : 'bowelFluid', tube(path, radius - 3));
  }

  const liverCenter = at(62, 8, 55);
  const liver = blob(liverCenter, size(82, 78, 68), rng, { yaw: 0.25 + rng.normal() * 0.1 });
  paint('liver', clipByPlane(liver, [liverCenter[0] - 10, liverCenter[1], liverCenter[2] - 30], [0.3, 0.2, -1]));
  paint('liver', blob(at(-5, 38, 72), size(48, 32, 34), rng, { yaw: 0.4 }));

  paint('spleen', blob(at(-88, -38, 58), size(26, 55, 46), rng, { yaw: -0.6 + rng.normal() * 0.1 }));

  const stomachCenter = at(-48, 30, 62);
  const stomachRadii = size(46, 35, 50, 0.2);
  const stomachYaw = -0.6;
  const stomach = blob(stomachCenter, stomachRadii, rng, { yaw: stomachYaw, wobble: 0.1 });
  const stomachLumen = shrink(stomach, stomachCenter, 0.82);
  paint('stomachWall', stomach);
  paint('stomachContent', stomachLumen);
  if (rng.next() < 0.8) {
    const airLevel: Vec3 = [stomachCenter[0], stomachCenter[1] + stomachRadii[1] * rng.uniform(0.1, 0.5), stomachCenter[2]];
    paint('stomachAir', clipByPlane(stomachLumen, airLevel, [0, -1, 0]));
  }

  const gallCenter = at(52, 46, 18);
  const gall = blob(gallCenter, size(15, 17, 32, 0.25), rng, { yaw: 0.5 });
  paint('gallbladder', gall);

  for (const [cortex, medulla, side, z] of [
    ['kidneyRightCortex', 'kidneyRightMedulla', 1, 2],
    ['kidneyLeftCortex', 'kidneyLeftMedulla', -1, 16],
  ] as const) {
    const center = at(side * 62, -56, z);
    const kidney = blob(center, size(27, 24, 54), rng, { yaw: side * 0.35, wobble: 0.05 });
    paint(cortex, kidney);
    paint(medulla, shrink(kidney, center, 0.6));
  }

  const pancreasPath = [at(26, 4, 8), at(2, 12, 18), at(-35, 5, 30), at(-62, -12, 40), at(-78, -26, 44)];
  paint('pancreas', tube(pancreasPath, [15, 12, 11, 10, 8].map((r) => r * rng.uniform(0.85, 1.15))));

  const duodenumPath = [at(14, 36, 40), at(42, 24, 32), at(52, 6, 6), at(46, -2, -18), at(16, 2, -26), at(-14, 6, -16)];
  // The pyloric antrum: a tapering tube from the stomach's body (on its long axis, towards its
  // right end and below its centre) to the duodenal bulb, so that stomach and duodenum are one
  // lumen. Its wall stops at the stomach's wall and its content opens into the stomach's content.
  const pyloricAntrumPath: Vec3[] = [
    [stomachCenter[0] + 0.5 * stomachRadii[0] * Math.cos(stomachYaw), stomachCenter[1] + 0.5 * stomachRadii[0] * Math.sin(stomachYaw), stomachCenter[2] - 0.3 * stomachRadii[2]],
    duodenumPath[0],
  ];
  paint('stomachWall', subtract(tube(pyloricAntrumPath, [18, 8]), stomach));
  paint('stomachContent', subtract(tube(pyloricAntrumPath, [12, 4]), stomachLumen));
  paint('duodenumWall', tube(duodenumPath, 11 * rng.uniform(0.85, 1.15)));
  paint('duodenumContent', tube(duodenumPath, 6));

  const aortaX = -16 + rng.normal() * 4;
  const aortaY = -by * 0.27;
  const aortaRadius = 11 * rng.uniform(0.85, 1.2);
  paint('aorta', tube([[aortaX, aortaY, zRange[1]], [aortaX + rng.normal() * 3, aortaY + 4, 0], [aortaX + rng.normal() * 4, aortaY + 6, zRange[0]]], aortaRadius));
  paint('inferiorVenaCava', tube([[22, aortaY + 2, zRange[1]], [24 + rng.normal() * 3, aortaY + 4, zRange[0]]], 10 * rng.uniform(0.8, 1.2)));

  const esophagusPath: Vec3[] = [[aortaX + 6, aortaY + 14, zRange[1]], [aortaX + 2, aortaY + 20, 105], [stomachCenter[0] + 18, stomachCenter[1] - 12, stomachCenter[2] + stomachRadii[2] * 0.6]];
  // The path ends inside the stomach; only the part outside it is oesophagus, so it joins the
  // stomach's wall at the cardia.
  paint('esophagus', subtract(tube(esophagusPath, 9 * rng.uniform(0.85, 1.15)), stomach));
  paint('esophagusLumen', tube(esophagusPath.slice(0, 2), 2.5));

  paintSpine(paint, -by + fat + 38, zRange, rng);
  paintRibs(paint, bx - fat - 6, by - fat - 6, rng);

  const huJitter = Object.fromEntries(TISSUE_NAMES.map((t) => [t, rng.normal() * 6])) as Record<TissueName, number>;
  // Novel structures draw from the stream only after everything above, so a phantom without them is
  // the same as before they existed; they are painted before the organs (which lie over them).
  if (structures.includes('psoas')) regions.splice(3, 0, ...psoasRegions(-by + fat + 38, sx, sz, rng));
  return { regions, huJitter, zRange };
}

/**
 * The psoas major muscles: from the upper lumbar spine (about the renal hila) down and outwards to
 * the pelvis, lateral to the vertebral bodies, widening from about 1 to 2.4 cm in radius (adult
 * muscles of roughly 150-250 ml each).
 */
function psoasRegions(spineY: number, sx: number, sz: number, rng: Rng): Region[] {
  return [1, -1].map((side) => {
    const jitter = () => rng.normal() * 2;
    const path: Vec3[] = [
      [side * (24 + jitter()) * sx, spineY + 4 + jitter(), 45 * sz],
      [side * (34 + jitter()) * sx, spineY + 12 + jitter(), -20 * sz],
      [side * (46 + jitter()) * sx, spineY + 22 + jitter(), -85 * sz],
      [side * (56 + jitter()) * sx, spineY + 34 + jitter(), -140 * sz],
    ];
    const radii = [10, 17, 22, 24].map((r) => r * rng.uniform(0.9, 1.1));
    return { tissue: side === 1 ? 'psoasRight' : 'psoasLeft', shape: tube(path, radii) } as Region;
  });
}

function paintSpine(paint: (t: TissueName, s: Shape) => void, spineY: number, [z0, z1]: [number, number], rng: Rng): void {
  const x = rng.normal() * 2;
  paint('disc', ellipticCylinder(x, spineY, 22, 18, z0, z1));
  const level = rng.uniform(28, 34);
  for (let z = z1 - rng.uniform(0, level); z > z0 - level; z -= level) {
    const top = Math.min(z1, z);
    const bottom = Math.max(z0, z - level + 6);
    if (top <= bottom) continue;
    paint('corticalBone', ellipticCylinder(x, spineY, 21, 17, bottom, top));
    paint('marrow', ellipticCylinder(x, spineY, 17.5, 13.5, bottom + 1.5, top - 1.5));
    paint('corticalBone', tube([[x - 10, spineY - 14, (top + bottom) / 2], [x, spineY - 34, (top + bottom) / 2 - 4], [x + 10, spineY - 14, (top + bottom) / 2]], 5));
  }
  paint('spinalCanal', ellipticCylinder(x, spineY - 24, 8, 7, z0, z1));
}

function paintRibs(paint: (t: TissueName, s: Shape) => void, ax: number, ay: number, rng: Rng): void {
  for (let z = 140; z > 30; z -= rng.uniform(24, 30)) {
    for (const side of [1, -1]) {
      const points: Vec3[] = [];
      for (let angle = -1.35; angle <= 0.9; angle += 0.25) {
        points.push([side * ax * Math.cos(angle) * 0.97, ay * Math.sin(angle) * 0.97, z - 25 * (angle + 1.35) / 2.25]);
      }
      paint('corticalBone', tube(points, 4.5));
    }
  }
}

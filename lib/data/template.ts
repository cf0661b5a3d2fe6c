import { FseftError } from '../util/errors';

/**
 * The 29-class universal template of the foundation model (CLIP-driven universal model / FSEFT
 * reference code). Output channel c (0-based) of a foundation model predicts class c + 1.
 */
export const TEMPLATE_CLASSES = [
  'spleen', 'rkidney', 'lkidney', 'gall', 'esophagus', 'liver', 'stomach', 'aorta', 'postcava', 'psv',
  'pancreas', 'radrenal', 'ladrenal', 'duodenum', 'bladder', 'prost_ut', 'liver_tumor', 'kidney_tumor',
  'kidney_cyst', 'celiac_truck', 'rlung', 'llung', 'bone', 'brain', 'lung_tumor', 'pancreas_tumor', 'hv',
  'hvt', 'colon_tumor',
] as const;

export type TemplateClassName = (typeof TEMPLATE_CLASSES)[number];
export const TEMPLATE_SIZE = TEMPLATE_CLASSES.length;

/**
 * Template classes that never share a voxel: whole organs, not the tumours, cysts and vessels that
 * lie inside them (liver_tumor and hv inside the liver, kidney_cyst inside a kidney) nor the portal
 * and splenic veins and the celiac trunk, which run between and into organs.
 */
export const DISJOINT_CLASSES: readonly TemplateClassName[] = [
  'spleen', 'rkidney', 'lkidney', 'gall', 'esophagus', 'liver', 'stomach', 'aorta', 'postcava', 'pancreas',
  'radrenal', 'ladrenal', 'duodenum', 'bladder', 'prost_ut', 'rlung', 'llung', 'bone', 'brain',
];

/** The nine target organs of the paper's adaptation experiments, in Table 1 order. */
export const PAPER_ORGANS: readonly TemplateClassName[] = ['spleen', 'lkidney', 'gall', 'esophagus', 'liver', 'pancreas', 'stomach', 'duodenum', 'aorta'];

/** Other names the same structures go by in public datasets (TotalSegmentator, MSD, BTCV, AMOS...). */
const SYNONYMS: Record<TemplateClassName, string[]> = {
  spleen: ['spl'],
  rkidney: ['kidney_right', 'right_kidney', 'kidney_r', 'rkid', 'r_kidney'],
  lkidney: ['kidney_left', 'left_kidney', 'kidney_l', 'lkid', 'l_kidney'],
  gall: ['gallbladder', 'gall_bladder'],
  esophagus: ['oesophagus', 'eso'],
  liver: ['liv'],
  stomach: ['sto'],
  aorta: ['aor'],
  postcava: ['inferior_vena_cava', 'ivc', 'vena_cava_inferior', 'postcava_ivc'],
  psv: ['portal_vein_and_splenic_vein', 'portal_and_splenic_vein', 'portal_vein', 'splenic_vein'],
  pancreas: ['pan'],
  radrenal: ['adrenal_gland_right', 'right_adrenal_gland', 'right_adrenal', 'adrenal_right'],
  ladrenal: ['adrenal_gland_left', 'left_adrenal_gland', 'left_adrenal', 'adrenal_left'],
  duodenum: ['duo'],
  bladder: ['urinary_bladder'],
  prost_ut: ['prostate', 'uterus', 'prostate_uterus', 'prostate_or_uterus'],
  liver_tumor: ['liver_tumour', 'liver_cancer', 'hepatic_tumor', 'liver_lesion'],
  kidney_tumor: ['kidney_tumour', 'kidney_cancer', 'renal_tumor'],
  kidney_cyst: ['renal_cyst'],
  celiac_truck: ['celiac_trunk'],
  rlung: ['lung_right', 'right_lung', 'lung_upper_lobe_right', 'lung_middle_lobe_right', 'lung_lower_lobe_right'],
  llung: ['lung_left', 'left_lung', 'lung_upper_lobe_left', 'lung_lower_lobe_left'],
  bone: ['bones', 'skeleton', 'sacrum', 'sternum', 'skull'],
  brain: [],
  lung_tumor: ['lung_tumour', 'lung_cancer', 'lung_nodule', 'lung_nodules'],
  pancreas_tumor: ['pancreas_tumour', 'pancreatic_tumor', 'pancreas_cancer', 'pancreatic_cancer'],
  hv: ['hepatic_vessel', 'hepatic_vessels', 'liver_vessels'],
  hvt: ['hepatic_vessel_tumor', 'hepatic_vessel_tumour'],
  colon_tumor: ['colon_tumour', 'colon_cancer'],
};

/** Name prefixes of bone structures in TotalSegmentator (vertebrae_L1, rib_left_3, ...). */
const BONE_PREFIXES = ['vertebrae_', 'rib_', 'hip_', 'femur_', 'humerus_', 'scapula_', 'clavicula_', 'costal_cartilages'];

/** Lower case, with spaces, hyphens and dots turned into underscores. */
export function normaliseName(name: string): string {
  return name.trim().toLowerCase().replace(/[\s\-.]+/g, '_');
}

const LOOKUP = new Map<string, number>();
TEMPLATE_CLASSES.forEach((name, index) => {
  LOOKUP.set(name, index + 1);
  for (const synonym of SYNONYMS[name]) LOOKUP.set(synonym, index + 1);
});

/** The template class (1-based) for a structure name, or undefined when it has none. */
export function findTemplateClass(name: string): number | undefined {
  const key = normaliseName(name);
  const direct = LOOKUP.get(key);
  if (direct !== undefined) return direct;
  if (BONE_PREFIXES.some((prefix) => key.startsWith(prefix))) return TEMPLATE_CLASSES.indexOf('bone') + 1;
  return undefined;
}

/** The template class (1-based) for an organ name; an error listing the known names otherwise. */
export function templateClass(name: string): number {
  const found = findTemplateClass(name);
  if (found !== undefined) return found;
  throw new FseftError(
    `unknown organ '${name}'; known organs: ${TEMPLATE_CLASSES.join(', ')} (and synonyms such as kidney_left, gallbladder, inferior_vena_cava); a structure outside the template adapts with a new head (fseft adapt --novel)`,
  );
}

/**
 * The name of a structure outside the template (the reference's heart chambers, lung lobes, gluteal
 * muscles): letters, digits, '_' and '-', not a template organ or synonym.
 */
export function novelStructureName(name: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name)) throw new FseftError(`a structure name needs a letter then up to 63 letters, digits, '_' or '-', got '${name}'`);
  const found = findTemplateClass(name);
  if (found !== undefined) throw new FseftError(`'${name}' is the template organ ${TEMPLATE_CLASSES[found - 1]}: adapt it without --novel (its head starts from the model's row)`);
  return name;
}

export function templateClassName(templateIndex: number): TemplateClassName {
  const name = TEMPLATE_CLASSES[templateIndex - 1];
  if (!name) throw new FseftError(`template class ${templateIndex} does not exist (1..${TEMPLATE_SIZE})`);
  return name;
}

/** Multi-hot annotation vector w_n of Eq. 1: entry c is 1 when template class c + 1 is annotated. */
export function annotationVector(classes: Iterable<number>): Uint8Array {
  const vector = new Uint8Array(TEMPLATE_SIZE);
  for (const c of classes) vector[c - 1] = 1;
  return vector;
}

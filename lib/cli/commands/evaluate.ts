import { readNifti } from '../../io/nifti';
import { parseLabelSpec } from '../../inference/predict';
import { sameGrid } from '../../io/volume';
import { hausdorff95, surfaceDice } from '../../metrics/distance';
import { dice } from '../../metrics/overlap';
import { FseftError } from '../../util/errors';
import { Options } from '../args';

export const EVALUATE_HELP = `fseft evaluate --pred <mask.nii.gz>[:<value>] --label <label.nii.gz>[:<value>] [--tolerance 2]
  Compares a predicted mask with a label on the same grid and prints JSON: Dice, HD95 (mm) and
  surface Dice at --tolerance mm. ':<value>' picks one value of a multi-label map (default: any
  non-zero voxel). Different geometries are an error.`;

export async function evaluateCommand(options: Options): Promise<void> {
  const predSpec = options.string('pred');
  const labelSpec = options.string('label');
  const tolerance = options.number('tolerance', 2, { min: 0 })!;
  options.rejectUnknown();
  if (!predSpec || !labelSpec) throw new FseftError(`give --pred and --label\n${EVALUATE_HELP}`);
  const pred = parseLabelSpec(predSpec);
  const label = parseLabelSpec(labelSpec);
  const [p, l] = await Promise.all([readNifti(pred.file), readNifti(label.file)]);
  if (!sameGrid(p, l)) {
    throw new FseftError(`geometry differs from ${pred.file}: shape ${l.shape.join('x')} vs ${p.shape.join('x')} or a different affine; resample the prediction onto the label's grid first`, label.file);
  }
  const binary = (data: ArrayLike<number>, value?: number) => Uint8Array.from(data as ArrayLike<number>, (v) => (value === undefined ? (v !== 0 ? 1 : 0) : v === value ? 1 : 0));
  const pm = binary(p.data, pred.value);
  const lm = binary(l.data, label.value);
  if (label.value !== undefined && !lm.some((v) => v)) throw new FseftError(`label value ${label.value} does not occur in the label`, label.file);
  const spacing = l.spacing;
  const result = {
    pred: predSpec,
    label: labelSpec,
    dice: dice(pm, lm),
    hd95_mm: hausdorff95(pm, lm, l.shape, spacing),
    surface_dice: surfaceDice(pm, lm, l.shape, spacing, tolerance),
    tolerance_mm: tolerance,
    voxels: { pred: pm.reduce((a, b) => a + b, 0), label: lm.reduce((a, b) => a + b, 0) },
  };
  console.log(JSON.stringify(result, (_, v) => (typeof v === 'number' && Number.isNaN(v) ? null : v)));
}

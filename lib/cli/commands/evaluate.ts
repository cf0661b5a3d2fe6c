import { readNifti } from '../../io/nifti';
import { parseLabelSpec } from '../../inference/predict';
import { sameGrid } from '../../io/volume';
import { evaluate } from '../../api';
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
  if (label.value !== undefined && !(l.data as ArrayLike<number> as number[]).some((v) => v === label.value)) throw new FseftError(`label value ${label.value} does not occur in the label`, label.file);
  const scores = evaluate(p, l, { predictionValue: pred.value, labelValue: label.value, tolerance });
  const result = {
    pred: predSpec,
    label: labelSpec,
    dice: scores.dice,
    hd95_mm: scores.hd95,
    surface_dice: scores.surfaceDice,
    tolerance_mm: tolerance,
    voxels: { pred: scores.voxels.prediction, label: scores.voxels.label },
  };
  console.log(JSON.stringify(result, (_, v) => (typeof v === 'number' && Number.isNaN(v) ? null : v)));
}

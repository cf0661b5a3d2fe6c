import * as fs from 'node:fs';
import { load } from '../../api';
import { FseftError } from '../../util/errors';
import { refuseOverwritingInputs } from '../../util/paths';
import { ProgressBar } from '../../util/progress';
import { Options } from '../args';

export const PREDICT_HELP = `fseft predict --model <dir|default> (--adapter <dir> | --organ <name>) --image <ct.nii.gz> --out <mask.nii.gz> [--probabilities <p.nii.gz>] [--overlap 0.25]
  Segments one organ: preprocessing as the model was trained, sliding-window inference (Gaussian
  weighting), then the probabilities are mapped back onto the input file's own grid (orientation,
  spacing, shape, affine), thresholded at 0.5 and reduced to the largest connected component. The
  mask overlays the original CT in any viewer. --organ without --adapter uses the pretrained head
  (generalization).`;

export async function predictCommand(options: Options): Promise<void> {
  const modelName = options.required('model');
  const adapterDir = options.string('adapter');
  const organName = options.string('organ');
  const image = options.required('image');
  const out = options.required('out');
  const probabilitiesFile = options.string('probabilities');
  const overlap = options.number('overlap', 0.25, { min: 0, below: 1 })!;
  const backend = options.string('backend');
  options.rejectUnknown();
  if (!adapterDir && !organName) throw new FseftError('give --adapter <dir> or --organ <name> (generalization)');
  for (const [option, file] of [['out', out], ['probabilities', probabilitiesFile]] as const) {
    if (file !== undefined && !/\.nii(\.gz)?$/.test(file)) throw new FseftError(`--${option} must end in .nii or .nii.gz`, file);
  }
  if (!fs.existsSync(image)) throw new FseftError('not found', image);
  refuseOverwritingInputs([out, ...(probabilitiesFile ? [probabilitiesFile] : [])], [image]);
  const model = await load(modelName, { backend });
  try {
    let bar: ProgressBar | undefined;
    const segmentOptions = { overlap, onWindow: (_: number, total: number) => (bar ??= new ProgressBar(total, 'sliding window')).tick() };
    let segmentation;
    if (adapterDir) {
      const adapted = model.loadAdapter(adapterDir);
      segmentation = await adapted.segment(image, segmentOptions);
      adapted.dispose();
    } else {
      segmentation = await model.segment(image, { organ: organName!, ...segmentOptions });
    }
    await segmentation.save(out, probabilitiesFile);
    const { organ, organs, method, voxels, millilitres, mask, seconds } = segmentation;
    console.log(`${organ} (${method}): ${voxels} voxels = ${millilitres.toFixed(1)} ml on the input grid ${mask.shape.join('x')} -> ${out} (${seconds.toFixed(1)} s)`);
    for (const o of organs ?? []) console.log(`  ${o.organ} (value ${o.value}): ${o.voxels} voxels = ${o.millilitres.toFixed(1)} ml`);
  } finally {
    model.dispose();
  }
}

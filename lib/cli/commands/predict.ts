import * as fs from 'node:fs';
import { Adapter, zeroShotRow } from '../../adapters/adapters';
import { loadAdapter } from '../../adapters/adapter-io';
import { initBackend } from '../../backend/backend';
import { templateClass, templateClassName } from '../../data/template';
import { writeNifti } from '../../io/nifti';
import { prepareCase, predictCase } from '../../inference/predict';
import { headChannelOf, modelPreprocessing } from '../../networks/model-io';
import { FseftError } from '../../util/errors';
import { refuseOverwritingInputs } from '../../util/paths';
import { ProgressBar } from '../../util/progress';
import { Options } from '../args';
import { loadModelOption } from './model-options';

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
  await initBackend(backend);
  const { model, manifest, fingerprint } = loadModelOption(modelName);
  const preprocessing = modelPreprocessing(manifest);
  let adapter: Adapter;
  let organ: string;
  if (adapterDir) {
    const loaded = loadAdapter(adapterDir, model, fingerprint);
    adapter = loaded.adapter;
    organ = loaded.manifest.organ;
  } else {
    const organClass = templateClass(organName!);
    organ = templateClassName(organClass);
    const channel = headChannelOf(manifest, organClass, organ);
    if (channel === undefined) throw new FseftError(`the model's head has no ${organ} channel; train an adapter for it with fseft adapt`);
    adapter = Adapter.create('generalization', model, zeroShotRow(model, channel), 0);
  }
  const prepared = await prepareCase(image, preprocessing);
  let bar: ProgressBar | undefined;
  const result = predictCase(model, adapter, prepared, preprocessing, {
    overlap,
    onWindow: (_, total) => (bar ??= new ProgressBar(total, 'sliding window')).tick(),
  });
  // Both files or neither: a failed second write (a full disk) removes the first.
  await writeNifti(out, result.mask, { description: `fseft ${adapter.method} ${organ}` });
  if (probabilitiesFile) {
    try {
      await writeNifti(probabilitiesFile, result.probabilities, { description: `fseft ${adapter.method} ${organ} probabilities` });
    } catch (error) {
      await fs.promises.rm(out, { force: true });
      throw error;
    }
  }
  const voxels = result.mask.data.reduce((a, b) => a + b, 0);
  const [sx, sy, sz] = result.mask.spacing;
  console.log(`${organ} (${adapter.method}): ${voxels} voxels = ${((voxels * sx * sy * sz) / 1000).toFixed(1)} ml on the input grid ${result.mask.shape.join('x')} -> ${out} (${result.seconds.toFixed(1)} s)`);
  adapter.dispose();
  model.dispose();
}

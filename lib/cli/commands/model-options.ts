import { FseftError } from '../../util/errors';
import { parseLabelSpec } from '../../inference/predict';

/** "image.nii.gz=label.nii.gz:5" -> image, label file and value. */
export function parseSupportSpec(spec: string, option: string): { image: string; label?: string; value?: number } {
  const [image, labelPart, ...rest] = spec.split('=');
  if (!image || rest.length > 0) throw new FseftError(`--${option} '${spec}': expected <image.nii.gz>=<label.nii.gz>[:<value>]`);
  if (labelPart === undefined) return { image };
  const { file, value } = parseLabelSpec(labelPart);
  return { image, label: file, value };
}

import { FseftError } from '../../util/errors';
import { parseLabelSpec, parseLabelValuesSpec } from '../../inference/predict';

/** "image.nii.gz=label.nii.gz:5" -> image, label file and value; ":6,1" gives several organs' values. */
export function parseSupportSpec(spec: string, option: string): { image: string; label?: string; value?: number; values?: number[] } {
  const [image, labelPart, ...rest] = spec.split('=');
  if (!image || rest.length > 0) throw new FseftError(`--${option} '${spec}': expected <image.nii.gz>=<label.nii.gz>[:<value>[,<value>...]]`);
  if (labelPart === undefined) return { image };
  const several = parseLabelValuesSpec(labelPart);
  if (several.values) return { image, label: several.file, values: several.values };
  const { file, value } = parseLabelSpec(labelPart);
  return { image, label: file, value };
}

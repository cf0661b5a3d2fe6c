import { loadModel, modelFingerprint, resolveModelDir } from '../../networks/model-io';
import { FseftError } from '../../util/errors';
import * as fs from 'node:fs';
import { parseLabelSpec } from '../../inference/predict';

/** Loads `--model <dir|default>` with its fingerprint; a missing default model gets a clear hint. */
export function loadModelOption(name: string): ReturnType<typeof loadModel> & { dir: string; fingerprint: string } {
  const dir = resolveModelDir(name);
  if (name === 'default' && !fs.existsSync(dir)) throw new FseftError("the default model is missing (data/models/default); see data/README.md for the command that trains it", dir);
  const loaded = loadModel(dir);
  return { ...loaded, dir, fingerprint: modelFingerprint(dir) };
}

/** "image.nii.gz=label.nii.gz:5" -> image, label file and value. */
export function parseSupportSpec(spec: string, option: string): { image: string; label?: string; value?: number } {
  const [image, labelPart, ...rest] = spec.split('=');
  if (!image || rest.length > 0) throw new FseftError(`--${option} '${spec}': expected <image.nii.gz>=<label.nii.gz>[:<value>]`);
  if (labelPart === undefined) return { image };
  const { file, value } = parseLabelSpec(labelPart);
  return { image, label: file, value };
}

import { nonFiniteVoxels, readNiftiWithInfo } from '../../io/nifti';
import { valueRange } from '../../io/volume';
import { FseftError } from '../../util/errors';
import { Options } from '../args';

const XFORM_NAMES: Record<number, string> = { 0: 'unknown', 1: 'scanner', 2: 'aligned', 3: 'talairach', 4: 'mni', 5: 'template' };

export const INFO_HELP = `fseft info <file.nii[.gz]> [more files] [--json] [--frame N]
  Prints shape, voxel spacing, orientation codes, datatype, value range and which of
  sform/qform defines the affine.`;

export async function infoCommand(options: Options): Promise<void> {
  const json = options.flag('json');
  const frame = options.integer('frame', undefined, { min: 0 });
  options.rejectUnknown({ positional: true });
  if (options.positional.length === 0) throw new FseftError(`no file given\n${INFO_HELP}`);
  for (const file of options.positional) {
    const { volume, info } = await readNiftiWithInfo(file, { frame, allowNonFinite: true });
    const nonFinite = nonFiniteVoxels(volume.data).count;
    const [min, max] = valueRange(volume.data);
    const summary = {
      file,
      shape: info.shape,
      frames: info.frames,
      spacing: volume.spacing.map((v) => round(v, 4)),
      orientation: volume.orientation,
      datatype: info.datatype,
      range: [min, max],
      nonFiniteVoxels: nonFinite,
      affineSource: info.affineSource,
      sformCode: info.sformCode,
      qformCode: info.qformCode,
      affine: info.affine.map((row) => row.map((v) => round(v, 4))),
      scaling: { slope: info.sclSlope, inter: info.sclInter },
      compressed: info.compressed,
      nifti: info.version,
    };
    if (json) {
      console.log(JSON.stringify(summary));
      continue;
    }
    console.log(`${file}`);
    console.log(`  shape        ${info.shape.join(' x ')}${info.frames > 1 ? ` (${info.frames} frames)` : ''}`);
    console.log(`  spacing      ${summary.spacing.join(' x ')} mm`);
    console.log(`  orientation  ${summary.orientation}`);
    console.log(`  datatype     ${info.datatype}${info.sclSlope !== 1 || info.sclInter !== 0 ? ` (scaled: slope ${info.sclSlope}, inter ${info.sclInter})` : ''}`);
    console.log(`  value range  ${min} .. ${max}${nonFinite > 0 ? ` (${nonFinite} voxels NaN or infinite: the other commands refuse this file)` : ''}`);
    console.log(`  affine from  ${info.affineSource} (sform code ${info.sformCode} ${XFORM_NAMES[info.sformCode] ?? '?'}, qform code ${info.qformCode} ${XFORM_NAMES[info.qformCode] ?? '?'})`);
    for (const row of summary.affine.slice(0, 3)) console.log(`    [${row.map((v) => v.toFixed(3).padStart(10)).join(' ')} ]`);
  }
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

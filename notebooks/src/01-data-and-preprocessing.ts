// %% [markdown]
// # 01 · Data and preprocessing
//
// A CT from a simulated institution (and the real TotalSegmentator example when `../../shared` is present):
// header facts, then the paper's preprocessing step by step (RAS orientation, 1.5 mm resampling, HU window
// [-175, 250] → [0, 1], foreground crop) with slice views and intensity histograms.
// **The synthetic CTs are simulated phantoms, not patient data.**

// %%
import * as tslab from 'tslab';
import * as fs from 'fs';
import * as path from 'path';
import * as fseft from '../dist/lib';

// Small settings when FSEFT_QUICK=1 (CI); larger ones otherwise.
const QUICK = process.env.FSEFT_QUICK === '1';
const WORK = path.resolve('../runs/notebooks');
fs.mkdirSync(WORK, { recursive: true });
await fseft.backend.initBackend();
const show = async (spec: fseft.viz.VegaLiteSpec) => tslab.display.html(await fseft.viz.renderSvg(spec));
console.log(`quick settings: ${QUICK}; outputs in ${WORK}`);

// %%
const target = await fseft.data.writeSynthDataset(path.join(WORK, 'data-01'), { name: 'site-b', cases: 1, seed: 0, institution: 'site-b', spacingScale: 2 }, { progress: false });
const files = [{ name: 'synthetic site-b', image: target.cases[0].image, label: target.cases[0].label! }];
const example = path.resolve('../../shared/data/totalseg-example');
if (fs.existsSync(path.join(example, 'example_ct_sm.nii.gz'))) files.push({ name: 'TotalSegmentator example', image: path.join(example, 'example_ct_sm.nii.gz'), label: path.join(example, 'example_seg.nii.gz') });
for (const f of files) {
  const info = await fseft.io.readNiftiInfo(f.image);
  console.log(`${f.name}: ${info.shape.join(' x ')} voxels, ${info.pixdim.map((v) => +v.toFixed(2)).join(' x ')} mm, ${info.datatype}, orientation ${fseft.io.orientationCodes(info.affine)}, affine from ${info.affineSource}`);
}

// %% [markdown]
// The preprocessing chain, one step at a time, on the synthetic CT (stored LPS; 2 x 2 x 6 mm voxels here, twice the simulated site's voxel size, to keep the notebook quick).

// %%
const raw = await fseft.readNifti(files[0].image);
const rawLabel = await fseft.readNifti(files[0].label);
const oriented = fseft.transforms.orient(raw);
const resampled = fseft.transforms.resampleToSpacing(oriented, [1.5, 1.5, 1.5], 'linear');
const scaled = fseft.transforms.scaleIntensityRange(resampled, fseft.transforms.CT_WINDOW, [0, 1], { clip: true });
const box = fseft.transforms.foregroundBox(scaled)!;
const cropped = fseft.transforms.cropBox(scaled, box);
for (const [step, v] of [['stored', raw], ['RAS', oriented], ['1.5 mm', resampled], ['window', scaled], ['crop', cropped]] as Array<[string, fseft.Volume]>) {
  console.log(`${step.padEnd(8)} ${v.shape.join(' x ').padEnd(16)} ${v.orientation}  spacing ${v.spacing.map((s) => +s.toFixed(2)).join(' x ')} mm`);
}
const prepared = fseft.transforms.preprocessCase({ image: raw, label: rawLabel });
console.log(`preprocessCase in one call: ${prepared.image.shape.join(' x ')} (same as the steps: ${prepared.image.shape.join() === cropped.shape.join()})`);

// %%
// Before (stored HU, RAS view of the stored grid) and after (preprocessed [0, 1]), axial slices through the liver.
const liver = fseft.data.templateClass('liver');
const preMask = prepared.label!.withData(Uint8Array.from(prepared.label!.data, (v) => (v === liver ? 1 : 0)));
const orientedLabel = fseft.transforms.orient(rawLabel);
const rawMask = orientedLabel.withData(Uint8Array.from(orientedLabel.data, (v) => (v === liver ? 1 : 0)));
await show({ hconcat: [
  fseft.viz.sliceOverlaySpec(oriented, [{ mask: rawMask, color: [230, 30, 30], label: 'liver' }], { slice: fseft.viz.largestMaskSlice(rawMask), window: [-175, 250], title: 'stored voxels (HU window)' }),
  fseft.viz.sliceOverlaySpec(prepared.image, [{ mask: preMask, color: [230, 30, 30], label: 'liver' }], { slice: fseft.viz.largestMaskSlice(preMask), title: 'preprocessed (1.5 mm, [0, 1])' }),
] });

// %%
await show({ vconcat: [
  fseft.viz.histogramSpec(raw.data, { title: 'intensities as stored', xTitle: 'HU', range: [-1100, 1500] }),
  fseft.viz.histogramSpec(prepared.image.data, { title: 'after the window [-175, 250] -> [0, 1]', xTitle: 'scaled intensity', range: [0, 1] }),
] });

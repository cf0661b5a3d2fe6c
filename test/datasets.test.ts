import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { datasetAnnotation, loadCase, openDataset, readCollection } from '../lib/data/datasets';
import { PAPER_ORGANS, TEMPLATE_SIZE, annotationVector, findTemplateClass, templateClass } from '../lib/data/template';
import { writeNifti } from '../lib/io/nifti';
import { Volume } from '../lib/io/volume';
import { diagonalAffine, tempDir } from './helpers';

const AFFINE = diagonalAffine([1.5, 1.5, 3]);
const image = () => new Volume(Int16Array.from({ length: 24 }, (_, i) => i * 10 - 100), [4, 3, 2], AFFINE);
const labelOf = (values: number[]) => new Volume(Uint8Array.from({ length: 24 }, (_, i) => values[i % values.length]), [4, 3, 2], AFFINE);

test('template: 29 classes, synonyms from public datasets, clear error for unknown organs', () => {
  assert.equal(TEMPLATE_SIZE, 29);
  assert.equal(templateClass('spleen'), 1);
  assert.equal(templateClass('kidney_left'), 3);
  assert.equal(templateClass('Gallbladder'), 4);
  assert.equal(templateClass('inferior vena cava'), 9);
  assert.equal(templateClass('colon_tumor'), 29);
  assert.equal(findTemplateClass('vertebrae_L1'), 23);
  assert.equal(findTemplateClass('lung_upper_lobe_left'), 22);
  assert.equal(findTemplateClass('colon'), undefined);
  assert.throws(() => templateClass('spleeen'), /unknown organ 'spleeen'; known organs: spleen, rkidney/);
  assert.deepEqual(PAPER_ORGANS.map(templateClass), [1, 3, 4, 5, 6, 11, 7, 14, 8]);
  const w = annotationVector([1, 6]);
  assert.equal(w.length, 29);
  assert.deepEqual([...w.keys()].filter((i) => w[i]), [0, 5]);
});

test('MSD task folder: labels mapped by name, tumours by task name', async () => {
  const dir = path.join(tempDir(), 'Task03_Liver');
  await writeNifti(path.join(dir, 'imagesTr', 'liver_1.nii.gz'), image());
  await writeNifti(path.join(dir, 'labelsTr', 'liver_1.nii.gz'), labelOf([0, 1, 2]));
  fs.writeFileSync(
    path.join(dir, 'dataset.json'),
    JSON.stringify({ name: 'LiverTumour', labels: { '0': 'background', '1': 'liver', '2': 'cancer' }, training: [{ image: './imagesTr/liver_1.nii.gz', label: './labelsTr/liver_1.nii.gz' }] }),
  );
  const dataset = openDataset(dir);
  assert.equal(dataset.format, 'msd');
  assert.deepEqual(dataset.labelMap, { 1: 6, 2: 17 });
  assert.deepEqual(dataset.annotated, [6, 17]);
  assert.deepEqual(Array.from(datasetAnnotation(dataset)).map((v, i) => (v ? i + 1 : 0)).filter(Boolean), [6, 17]);
  const loaded = await loadCase(dataset, dataset.cases[0]);
  assert.equal(loaded.id, 'liver_1');
  assert.deepEqual(Array.from(loaded.label!.data.slice(0, 3)), [0, 6, 17]);
});

test('nnU-Net v2 raw folder: {"name": value} labels, imagesTr/<case>_0000', async () => {
  const dir = path.join(tempDir(), 'Dataset009_Spleen');
  await writeNifti(path.join(dir, 'imagesTr', 'spleen_7_0000.nii.gz'), image());
  await writeNifti(path.join(dir, 'labelsTr', 'spleen_7.nii.gz'), labelOf([0, 1]));
  fs.writeFileSync(path.join(dir, 'dataset.json'), JSON.stringify({ labels: { background: 0, spleen: 1 }, file_ending: '.nii.gz' }));
  const dataset = openDataset(dir);
  assert.equal(dataset.cases[0].id, 'spleen_7');
  assert.deepEqual(dataset.annotated, [1]);
  const loaded = await loadCase(dataset, dataset.cases[0]);
  assert.deepEqual(Array.from(loaded.label!.data.slice(0, 2)), [0, 1]);
});

test('MSD labels outside the template are an error naming dataset.json', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'dataset.json'), JSON.stringify({ labels: { '0': 'background', '1': 'left ventricle' }, training: [] }));
  assert.throws(() => openDataset(dir), /dataset\.json: label 1 'left ventricle' has no class in the 29-class template/);
});

test('TotalSegmentator subjects: per-structure masks merged into template classes', async () => {
  const root = tempDir();
  for (const subject of ['s0001', 's0002']) {
    await writeNifti(path.join(root, subject, 'ct.nii.gz'), image());
    await writeNifti(path.join(root, subject, 'segmentations', 'liver.nii.gz'), labelOf([0, 1, 0, 0]));
    await writeNifti(path.join(root, subject, 'segmentations', 'kidney_left.nii.gz'), labelOf([0, 0, 1, 0]));
    await writeNifti(path.join(root, subject, 'segmentations', 'lung_upper_lobe_left.nii.gz'), labelOf([0, 0, 0, 1]));
    await writeNifti(path.join(root, subject, 'segmentations', 'colon.nii.gz'), labelOf([1, 0, 0, 0]));
  }
  const all = openDataset(root);
  assert.equal(all.format, 'totalseg');
  assert.deepEqual(all.cases.map((c) => c.id), ['s0001', 's0002']);
  assert.deepEqual(all.annotated, [3, 6, 22]);
  const loaded = await loadCase(all, all.cases[1]);
  assert.deepEqual(Array.from(loaded.label!.data.slice(0, 4)), [0, 6, 3, 22]);
  const liverOnly = openDataset(root, { organs: ['liver'] });
  assert.deepEqual(liverOnly.annotated, [6]);
  assert.throws(() => openDataset(path.join(root, 's0001'), { organs: ['pancreas'] }), /no segmentation masks for template classes 11/);
});

test('pair lists and collection manifests; label geometry mismatch is reported', async () => {
  const dir = tempDir();
  await writeNifti(path.join(dir, 'a.nii.gz'), image());
  await writeNifti(path.join(dir, 'a_seg.nii.gz'), labelOf([0, 5, 2]));
  await writeNifti(path.join(dir, 'b_seg.nii.gz'), new Volume(new Uint8Array(24), [4, 3, 2], diagonalAffine([1, 1, 1])));
  fs.writeFileSync(
    path.join(dir, 'pairs.json'),
    JSON.stringify({ name: 'mine', labels: { '5': 'liver', '2': 'spleen' }, cases: [{ image: 'a.nii.gz', label: 'a_seg.nii.gz' }, { image: 'a.nii.gz', label: 'b_seg.nii.gz', id: 'b' }] }),
  );
  fs.writeFileSync(path.join(dir, 'collection.json'), JSON.stringify({ datasets: [{ path: 'pairs.json', name: 'renamed' }] }));
  const [dataset] = readCollection(path.join(dir, 'collection.json'));
  assert.equal(dataset.name, 'renamed');
  assert.deepEqual(dataset.annotated, [1, 6]);
  const loaded = await loadCase(dataset, dataset.cases[0]);
  assert.deepEqual(Array.from(loaded.label!.data.slice(0, 3)), [0, 6, 1]);
  await assert.rejects(loadCase(dataset, dataset.cases[1]), /b_seg\.nii\.gz: geometry does not match the image/);
  fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ labels: { '1': 'hearts' }, cases: [] }));
  assert.throws(() => openDataset(path.join(dir, 'bad.json')), /bad\.json: label 1: unknown organ 'hearts'/);
});

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCase } from '../lib/data/datasets';
import { INSTITUTIONS, generatePhantom } from '../lib/data/synth/phantom';
import { writeSynthDataset } from '../lib/data/synth/synth-datasets';
import { PAPER_ORGANS, templateClass } from '../lib/data/template';
import { axisOrientation } from '../lib/io/affine';
import { readNifti } from '../lib/io/nifti';
import { Rng } from '../lib/util/random';
import { tempDir } from './helpers';

const FAST = { spacingScale: 3 };

function organStats(phantom: ReturnType<typeof generatePhantom>, organ: string) {
  const cls = templateClass(organ);
  let count = 0;
  let sum = 0;
  phantom.label.data.forEach((v, i) => {
    if (v === cls) {
      count++;
      sum += phantom.image.data[i];
    }
  });
  const [sx, sy, sz] = phantom.image.spacing;
  return { millilitres: (count * sx * sy * sz) / 1000, meanHu: sum / Math.max(1, count) };
}

test('phantoms: same seed same voxels, another seed another subject', () => {
  const a = generatePhantom(new Rng(11), FAST);
  const b = generatePhantom(new Rng(11), FAST);
  const c = generatePhantom(new Rng(12), FAST);
  assert.deepEqual(Buffer.from(a.image.data.buffer), Buffer.from(b.image.data.buffer));
  assert.deepEqual(Buffer.from(a.label.data.buffer), Buffer.from(b.label.data.buffer));
  assert.notDeepEqual(Buffer.from(a.label.data.buffer), Buffer.from(c.label.data.buffer));
});

test('phantoms: every paper organ present with a plausible volume and attenuation', () => {
  const phantom = generatePhantom(new Rng(5), { spacingScale: 2 });
  const expectedMl: Record<string, [number, number]> = {
    liver: [800, 3200], spleen: [80, 600], lkidney: [70, 350], gall: [10, 120], esophagus: [3, 80],
    pancreas: [25, 200], stomach: [120, 900], duodenum: [15, 200], aorta: [40, 250],
  };
  for (const organ of PAPER_ORGANS) {
    const { millilitres, meanHu } = organStats(phantom, organ);
    const [low, high] = expectedMl[organ];
    assert.ok(millilitres >= low && millilitres <= high, `${organ}: ${millilitres.toFixed(0)} mL outside ${low}..${high}`);
    if (organ !== 'stomach' && organ !== 'esophagus') assert.ok(meanHu > -50 && meanHu < 300, `${organ}: mean ${meanHu.toFixed(0)} HU`);
  }
  // Portal-venous contrast: aorta brighter than liver, liver brighter than gallbladder.
  const hu = (o: string) => organStats(phantom, o).meanHu;
  assert.ok(hu('aorta') > hu('liver') && hu('liver') > hu('gall'));
  assert.ok(phantom.image.data[0] < -900, 'air in the corner');
});

/** Faces shared by voxels of two labels, and the voxels of `inner` that `outer` surrounds in their axial plane. */
function contact(phantom: ReturnType<typeof generatePhantom>, inner: number, outer: number) {
  const { data, shape, affine } = phantom.label;
  const [nx, ny, nz] = shape;
  const at = (i: number, j: number, k: number) => (i < 0 || j < 0 || k < 0 || i >= nx || j >= ny || k >= nz ? -1 : data[i + nx * (j + ny * k)]);
  // The two array axes that span the axial (world x-y) plane, whatever the institution's orientation.
  const inPlane = axisOrientation(affine).flatMap(({ worldAxis }, axis) => (worldAxis === 2 ? [] : [axis]));
  let faces = 0;
  let surrounded = 0;
  for (let k = 0; k < nz; k++) for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) {
    if (at(i, j, k) !== inner) continue;
    for (const a of [0, 1, 2]) for (const step of [-1, 1]) {
      const p = [i, j, k];
      p[a] += step;
      if (at(p[0], p[1], p[2]) === outer) faces++;
    }
    let blocked = 0;
    for (const a of inPlane) for (const step of [-1, 1]) {
      const p = [i, j, k];
      for (p[a] += step; at(p[0], p[1], p[2]) >= 0; p[a] += step) if (at(p[0], p[1], p[2]) === outer) { blocked++; break; }
    }
    if (blocked === 4) surrounded++;
  }
  return { faces, surrounded };
}

test('phantoms: the oesophagus ends on the stomach wall and the duodenum continues the pylorus', () => {
  const stomach = templateClass('stomach');
  for (const seed of [5, 8]) {
    const phantom = generatePhantom(new Rng(seed), { spacingScale: 2 });
    const esophagus = contact(phantom, templateClass('esophagus'), stomach);
    assert.ok(esophagus.faces > 0, `seed ${seed}: the oesophagus does not reach the stomach`);
    assert.equal(esophagus.surrounded, 0, `seed ${seed}: ${esophagus.surrounded} oesophagus voxels lie inside the stomach`);
    const duodenum = contact(phantom, templateClass('duodenum'), stomach);
    assert.ok(duodenum.faces > 0, `seed ${seed}: the duodenum does not touch the stomach (no pylorus)`);
  }
});

test('institutions shift the domain: orientation, spacing, contrast', () => {
  const source = generatePhantom(new Rng(5), { institution: INSTITUTIONS.source, ...FAST });
  const shifted = generatePhantom(new Rng(5), { institution: INSTITUTIONS['site-b'], ...FAST });
  assert.equal(source.image.orientation, 'RAS');
  assert.equal(shifted.image.orientation, 'LPS');
  assert.deepEqual(shifted.image.spacing.map((s) => +s.toFixed(3)), [3, 3, 9]);
  const aorta = (p: typeof source) => organStats(p, 'aorta').meanHu;
  assert.ok(aorta(source) - aorta(shifted) > 50, 'less contrast at site-b');
});

test('synthetic datasets: MSD layout, partial labels only, reproducible and resumable', async () => {
  const dir = path.join(tempDir(), 'synth-kits');
  const dataset = await writeSynthDataset(dir, { name: 'synth-kits', cases: 2, seed: 3, organs: ['kidney_left', 'rkidney'], ...FAST }, { workers: 1, progress: false });
  assert.deepEqual(dataset.annotated, [2, 3]);
  assert.equal(dataset.cases.length, 2);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'dataset.json'), 'utf8'));
  assert.match(json.description, /SYNTHETIC/);
  const loaded = await loadCase(dataset, dataset.cases[1]);
  assert.deepEqual([...new Set(loaded.label!.data)].sort(), [0, 2, 3]);
  const before = fs.statSync(dataset.cases[0].image).mtimeMs;
  const again = await writeSynthDataset(dir, { name: 'synth-kits', cases: 3, seed: 3, organs: ['lkidney', 'rkidney'], ...FAST }, { workers: 1, progress: false });
  assert.equal(fs.statSync(dataset.cases[0].image).mtimeMs, before, 'finished cases are not redone');
  assert.equal(again.cases.length, 3);
  const direct = await readNifti(again.cases[2].image);
  assert.ok(direct.data instanceof Int16Array);
  await assert.rejects(writeSynthDataset(dir, { name: 'x', cases: 1, seed: 1, organs: ['bladder'] }), /the phantom has no bladder/);
});

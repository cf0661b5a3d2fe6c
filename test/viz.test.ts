import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { Volume } from '../lib/io/volume';
import { ExperimentRecord } from '../lib/training/experiment';
import { diceBarsSpec, gammaCurveSpec, histogramSpec, labelledGridSpec, overlayGridSpec, validationCurvesSpec, renderSvg, sliceOverlaySpec, trainingCurvesSpec } from '../lib/viz/charts';
import { overlaySlice, largestMaskSlice } from '../lib/viz/overlay';
import { frameHtml, frameToCsv, summaryFrame, table1Frame } from '../lib/viz/tables';
import { diagonalAffine } from './helpers';

/** A 10 x 8 x 3 RAS volume, grey 0.5, and a mask: a 2 x 2 square at i = 2..3, j = 5..6 on slice k = 1. */
function squareCase() {
  const shape: [number, number, number] = [10, 8, 3];
  const image = new Volume(new Float32Array(240).fill(0.5), shape, diagonalAffine([1, 1, 1]));
  const mask = image.withData(new Uint8Array(240));
  for (const i of [2, 3]) for (const j of [5, 6]) mask.data[i + 10 * (j + 8 * 1)] = 1;
  return { image, mask };
}

/** Decodes our own 8-bit RGB PNG (filter 0 rows) back to pixels. */
function decodePng(png: Buffer): { width: number; height: number; pixels: Uint8Array } {
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  const chunks: Buffer[] = [];
  for (let offset = 8; offset < png.length; ) {
    const length = png.readUInt32BE(offset);
    if (png.toString('latin1', offset + 4, offset + 8) === 'IDAT') chunks.push(png.subarray(offset + 8, offset + 8 + length));
    offset += 12 + length;
  }
  const raw = zlib.inflateSync(Buffer.concat(chunks));
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) pixels.set(raw.subarray(y * (width * 3 + 1) + 1, (y + 1) * (width * 3 + 1)), y * width * 3);
  return { width, height, pixels };
}

test('overlay: a known square mask appears at the known place (radiological view: right on the left, anterior up)', () => {
  const { image, mask } = squareCase();
  const picture = overlaySlice(image, mask, { slice: 1, zoom: 1, color: [255, 0, 0], opacity: 1 });
  assert.equal(picture.width, 10);
  assert.equal(picture.height, 8);
  const red: string[] = [];
  for (let row = 0; row < 8; row++) for (let col = 0; col < 10; col++) if (picture.pixels[(row * 10 + col) * 3] === 255) red.push(`${row},${col}`);
  // row = ny - 1 - j, col = nx - 1 - i.
  assert.deepEqual(red.sort(), ['1,6', '1,7', '2,6', '2,7']);
  assert.equal(picture.pixels[0], 128); // grey 0.5 elsewhere
  assert.equal(largestMaskSlice(mask), 1);
  // The same pixels inside the vega-lite spec's PNG data URI (full resolution, no subsampling).
  const spec = sliceOverlaySpec(image, [{ mask, color: [255, 0, 0], label: 'organ' }], { slice: 1, zoom: 1 }) as { data: { values: Array<{ url: string }> } };
  const url = spec.data.values[0].url;
  assert.match(url, /^data:image\/png;base64,/);
  const decoded = decodePng(Buffer.from(url.split(',')[1], 'base64'));
  assert.equal(decoded.width, 10);
  assert.equal(decoded.height, 8);
  assert.ok(decoded.pixels[(1 * 10 + 6) * 3] > decoded.pixels[(1 * 10 + 6) * 3 + 1] + 100, 'the square is red');
  assert.equal(decoded.pixels[(0 * 10 + 0) * 3], 128);
});

const records: ExperimentRecord[] = [];
for (const organ of ['liver', 'spleen'])
  for (const [method, gamma] of [['adapter', undefined], ['adapter+ti', 0.05], ['adapter+ti', 0.25], ['adapter+ti', 0.5], ['lp', undefined]] as Array<[string, number | undefined]>)
    for (const fold of [0, 1])
      records.push({ key: `${method}|${organ}|1|${fold}|0|1|${gamma ?? ''}`, method, organ, k: 1, fold, seed: 0, gamma, lambda: gamma === undefined ? undefined : 1, epochs: 10, learningRate: 1e-3, dice: 0.5 + 0.1 * fold + (gamma ?? 0) / 2, queryDice: {}, supports: [], trainableParameters: 10, trainSeconds: 1 });

test('every chart is a valid vega-lite spec that renders to SVG', async () => {
  const { image, mask } = squareCase();
  const specs = {
    overlay: sliceOverlaySpec(image, [{ mask, color: [230, 30, 30], label: 'prediction' }], { slice: 1 }),
    grid: overlayGridSpec([{ title: 'image', image }, { title: 'truth', image, mask, color: [40, 200, 60] }], { slice: 1 }),
    curves: trainingCurvesSpec([
      { epoch: 1, step: 10, learningRate: 1e-3, loss: 0.9, classLoss: { liver: 0.8, spleen: 0.95 }, seconds: 1 },
      { epoch: 2, step: 20, learningRate: 1e-3, loss: 0.7, classLoss: { liver: 0.5, spleen: 0.9 }, seconds: 1 },
    ]),
    validation: validationCurvesSpec([
      { epoch: 1, step: 10, learningRate: 1e-3, loss: 0.9, classLoss: {}, validation: { dice: { liver: 0.5, spleen: 0.2 }, seconds: 1 }, seconds: 1 },
      { epoch: 2, step: 20, learningRate: 1e-3, loss: 0.7, classLoss: {}, validation: { dice: { liver: 0.8, spleen: 0.6 }, seconds: 1 }, seconds: 1 },
    ]),
    bars: diceBarsSpec(records),
    gamma: gammaCurveSpec(records),
    histogram: histogramSpec(Float32Array.from({ length: 1000 }, (_, i) => (i % 100) * 4 - 175), { xTitle: 'HU' }),
  };
  for (const [name, spec] of Object.entries(specs)) {
    const svg = await renderSvg(spec);
    assert.match(svg, /^<svg[^>]*>/, `${name} renders`);
    assert.ok(svg.length > 500, `${name} draws something`);
  }
  // The gamma plot draws one line per organ and the no-TI reference as a dashed rule.
  const gammaSvg = await renderSvg(specs.gamma);
  assert.match(gammaSvg, /stroke-dasharray="6,4"/);
  assert.equal((gammaSvg.match(/aria-roledescription="line mark"/g) ?? []).length, 2);
  assert.match(await renderSvg(specs.overlay), /<image[^>]+href="data:image\/png;base64,/);
  const long = records.map((r) => (r.gamma === undefined ? r : { ...r, method: 'adapter+ti with a long name for its settings' }));
  assert.ok((await renderSvg(diceBarsSpec(long))).includes('>adapter+ti with a long name for its settings (gamma 0.05)</text>'), 'long method labels are not cut');
});

test('the qualitative grid names its rows (methods) and columns (organs), and zooms its panels', async () => {
  const { image, mask } = squareCase();
  const cell = { image, mask, slice: 1 };
  const spec = labelledGridSpec([[{ ...cell, color: [40, 200, 60] }, cell], [{ ...cell, caption: 'Dice 0.812' }, undefined]], ['ground truth', 'adapter+ti'], ['liver', 'spleen'], { zoom: 3 });
  const svg = await renderSvg(spec);
  for (const label of ['ground truth', 'adapter+ti', 'liver', 'spleen', 'Dice 0.812']) assert.ok(svg.includes(`>${label}</text>`), `the figure shows '${label}'`);
  assert.equal((svg.match(/<image /g) ?? []).length, 3, 'three panels (a missing cell is left out)');
  const width = Number(/<image[^>]+width="(\d+)"/.exec(svg)![1]);
  assert.equal(width, image.shape[0] * 3, 'panels at 3 pixels per voxel');
  assert.throws(() => labelledGridSpec([[cell]], ['a', 'b'], ['liver']), /one label per row/);
});

test('tables: danfojs frames of the records (mean and std over folds, Table-1 layout, CSV)', async () => {
  const summary = await summaryFrame(records);
  const rows = toRows(summary);
  const liverAdapter = rows.find((r) => r.method === 'adapter' && r.organ === 'liver')!;
  assert.ok(Math.abs((liverAdapter.dice_mean as number) - 0.55) < 1e-9);
  assert.ok(Math.abs((liverAdapter.dice_std as number) - Math.sqrt(0.005)) < 1e-9); // sample std of 0.5, 0.6
  assert.equal(liverAdapter.dice_count, 2);
  const table = toRows(await table1Frame(records));
  assert.deepEqual(Object.keys(table[0]), ['k', 'method', 'liver', 'spleen', 'mean']);
  assert.deepEqual(table.map((r) => r.method), ['adapter', 'adapter+ti g=0.05', 'adapter+ti g=0.25', 'adapter+ti g=0.5', 'lp']);
  assert.equal(table[2].liver, 0.675);
  const csv = await frameToCsv(await table1Frame(records));
  assert.match(csv, /^k,method,liver,spleen,mean\n1,adapter,0\.55,0\.55,0\.55\n/);
});

test('tables render as HTML with rounded numbers, as pandas in Jupyter (not box-drawing text with 16 digits)', async () => {
  const html = frameHtml(await summaryFrame(records), { caption: 'Dice <by method>' });
  assert.match(html, /^<table class="dataframe"/);
  assert.match(html, /<caption[^>]*>Dice &lt;by method&gt;<\/caption>/, 'text is escaped');
  assert.match(html, /<th style="text-align: left">method<\/th>.*<th style="text-align: right">dice_mean<\/th>/, 'text columns left, numbers right');
  assert.ok(html.includes('<td style="text-align: right">0.550</td>'), 'a mean of 0.55 shows as 0.550');
  assert.ok(html.includes('<td style="text-align: right">0.071</td>'), 'the std sqrt(0.005) = 0.0707... shows rounded');
  assert.ok(html.includes('<td style="text-align: right">2</td>'), 'counts stay whole');
  assert.ok(!/\d\.\d{4,}/.test(html), 'no long decimals');
  assert.equal((html.match(/<tr>/g) ?? []).length, (await summaryFrame(records)).shape[0] + 1, 'a header row and one row per frame row');
});

function toRows(frame: { columns: string[]; values: unknown }): Array<Record<string, unknown>> {
  return (frame.values as unknown[][]).map((row) => Object.fromEntries(frame.columns.map((c, i) => [c, row[i]])));
}

test('a multi-stage pretraining log is drawn stage after stage, each stage marked, not folded onto epochs 1..n', async () => {
  const stage = (n: number, epochs: number) =>
    Array.from({ length: epochs }, (_, e) => ({ epoch: e + 1, step: e + 1, learningRate: 1e-3, loss: 1 - 0.1 * e, classLoss: { liver: 0.5 }, seconds: 1, stage: n, ...(n === 2 ? { validation: { dice: { liver: 0.5 + 0.1 * e }, seconds: 1 } } : {}) }));
  const log = [...stage(1, 3), ...stage(2, 2)];
  const spec = trainingCurvesSpec(log) as { layer: Array<{ data: { values: Array<{ epoch: number; series?: string; label?: string }> } }> };
  const totals = spec.layer[0].data.values.filter((v) => v.series === 'total (Eq. 1)').map((v) => v.epoch);
  assert.deepEqual(totals, [1, 2, 3, 4, 5], 'epochs keep rising across stages');
  assert.deepEqual(spec.layer[1].data.values, [{ epoch: 3.5, label: 'stage 2' }], 'the second stage is marked where it starts');
  const svg = await renderSvg(spec);
  assert.ok(svg.includes('>stage 2</text>') && svg.includes('>epoch (all stages, in order)</text>'));
  const validation = validationCurvesSpec(log) as { layer: Array<{ data: { values: Array<{ epoch: number }> } }> };
  assert.deepEqual(validation.layer[0].data.values.map((v) => v.epoch), [4, 5], 'validation points sit at their running epochs');
  const single = trainingCurvesSpec(stage(1, 2)) as { layer: unknown[] };
  assert.equal(single.layer.length, 1, 'a one-stage log has no stage marks');
});

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT, tempDir } from './helpers';

/**
 * Executes every notebook headless with the tslab kernel (jupyter nbconvert --execute) on quick
 * settings and checks that each produced its figures and tables. Skips, saying why, where
 * Jupyter or the kernel is not installed (see environment/README.md for the set-up step).
 */
const NOTEBOOK_DIR = path.join(REPO_ROOT, 'notebooks');
const NOTEBOOKS = fs.readdirSync(NOTEBOOK_DIR).filter((f) => f.endsWith('.ipynb')).sort();
const PYTHON = process.env.FSEFT_JUPYTER_PYTHON ?? (fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const BIN = path.join(REPO_ROOT, 'node_modules', '.bin');

function jupyterSkip(): string | false {
  const probe = spawnSync(PYTHON, ['-c', 'import nbconvert, jupyter_client.kernelspec as k; print("tslab" in k.find_kernel_specs())'], { encoding: 'utf8' });
  if (probe.status !== 0) return `skipped: no Jupyter with nbconvert for ${PYTHON} (install jupyter-nbconvert and python3-ipykernel, see environment/README.md)`;
  if (probe.stdout.trim() !== 'True') return 'skipped: the tslab kernel is not registered (run npm run setup:notebooks)';
  return false;
}

interface Output {
  output_type: string;
  data?: Record<string, unknown>;
  text?: string | string[];
  ename?: string;
}

/** What each notebook must show: SVG plots and HTML tables (text/html), PNG figures. */
const EXPECTED: Record<string, { svg: number; png: number; tables: number }> = {
  '01-data-and-preprocessing.ipynb': { svg: 2, png: 0, tables: 0 },
  '02-foundation-pretraining.ipynb': { svg: 2, png: 0, tables: 1 },
  '03-few-shot-adaptation.ipynb': { svg: 2, png: 0, tables: 1 },
  '04-gamma-ablation.ipynb': { svg: 1, png: 0, tables: 1 },
  '05-qualitative.ipynb': { svg: 1, png: 0, tables: 0 },
  '06-adapters-vs-mlp.ipynb': { svg: 2, png: 0, tables: 2 },
  '07-results.ipynb': { svg: 1, png: 0, tables: 1 },
};

test('committed notebooks carry no outputs and use the tslab kernel', () => {
  assert.deepEqual(NOTEBOOKS, Object.keys(EXPECTED));
  for (const name of NOTEBOOKS) {
    const notebook = JSON.parse(fs.readFileSync(path.join(NOTEBOOK_DIR, name), 'utf8'));
    assert.equal(notebook.metadata.kernelspec.name, 'tslab', name);
    for (const cell of notebook.cells) {
      if (cell.cell_type !== 'code') continue;
      assert.deepEqual(cell.outputs, [], `${name} has stored outputs`);
      assert.equal(cell.execution_count, null, `${name} has an execution count`);
      assert.doesNotMatch(cell.source.join(''), /from '\.\.\/(lib|dist\/lib\/(?!'))/, `${name} imports something other than the public API`);
    }
  }
});

/**
 * Bounds for the quick settings: the slowest cell takes under a minute on 2 cores, a whole notebook
 * under one and a half. A cell past CELL_TIMEOUT_S is reported by its number and first line.
 */
const CELL_TIMEOUT_S = 180;
const NOTEBOOK_TIMEOUT_S = 900;

/** Which cell of a notebook nbconvert's timeout message previews ("cell N: first line"). */
export function hungCell(notebookFile: string, stderr: string): string | undefined {
  if (!/CellTimeoutError|timed out/.test(stderr)) return undefined;
  const preview = /Here is a preview of the cell contents:\s*-+\s*\n([\s\S]*?)\n\s*-{5,}/.exec(stderr)?.[1];
  const notebook = JSON.parse(fs.readFileSync(notebookFile, 'utf8')) as { cells: Array<{ cell_type: string; source: string[] | string }> };
  const sources = notebook.cells.map((cell) => (Array.isArray(cell.source) ? cell.source.join('') : cell.source));
  // nbconvert previews the cell as text, or (newer versions) as a Python list of its lines.
  const listed = preview && /^\s*\[\s*(['"])((?:\\.|(?!\1).)*)\1/.exec(preview);
  const firstLine = listed ? listed[2].replace(/\\(['"\\])/g, '$1') : preview?.split('\n').map((line) => line.trim()).find((line) => line !== '' && line !== '...');
  const index = firstLine === undefined ? -1 : sources.findIndex((source) => source.includes(firstLine));
  return index >= 0 ? `cell ${index + 1}: ${sources[index].split('\n')[0]}` : `a cell (preview: ${firstLine ?? 'none'})`;
}

test('every notebook runs top to bottom with the tslab kernel and shows its figures and tables', { skip: jupyterSkip() }, () => {
  const out = tempDir('fseft-notebooks-');
  for (const name of NOTEBOOKS) {
    const result = spawnSync(PYTHON, ['-m', 'jupyter', 'nbconvert', '--to', 'notebook', '--execute', name, '--output-dir', out, `--ExecutePreprocessor.timeout=${CELL_TIMEOUT_S}`], {
      cwd: NOTEBOOK_DIR,
      encoding: 'utf8',
      timeout: NOTEBOOK_TIMEOUT_S * 1000,
      killSignal: 'SIGKILL',
      env: { ...process.env, FSEFT_QUICK: '1', PATH: `${BIN}${path.delimiter}${process.env.PATH}` },
    });
    if (result.status === null) assert.fail(`${name} did not finish within ${NOTEBOOK_TIMEOUT_S} s (killed):\n${result.stderr.slice(-3000)}`);
    const hung = hungCell(path.join(NOTEBOOK_DIR, name), result.stderr);
    assert.equal(hung, undefined, `${name}: ${hung} did not finish within ${CELL_TIMEOUT_S} s`);
    assert.equal(result.status, 0, `${name} failed:\n${result.stderr.slice(-3000)}`);
    const executed = JSON.parse(fs.readFileSync(path.join(out, name), 'utf8'));
    const outputs: Output[] = executed.cells.flatMap((c: { outputs?: Output[] }) => c.outputs ?? []);
    assert.equal(outputs.filter((o) => o.output_type === 'error').length, 0, `${name} has a cell error`);
    // nbformat stores multi-line data as lists of lines.
    const joined = (value: unknown) => (Array.isArray(value) ? value.join('') : typeof value === 'string' ? value : '');
    const html = outputs.filter((o) => o.data && /<svg/.test(joined(o.data['text/html']))).length;
    const png = outputs.filter((o) => o.data && o.data['image/png']).length;
    const tables = outputs.filter((o) => o.data && /<table class="dataframe"/.test(joined(o.data['text/html']))).length;
    const want = EXPECTED[name];
    assert.ok(html >= want.svg, `${name}: ${html} SVG plots, expected at least ${want.svg}`);
    assert.ok(png >= want.png, `${name}: ${png} PNG figures, expected at least ${want.png}`);
    assert.ok(tables >= want.tables, `${name}: ${tables} tables, expected at least ${want.tables}`);
  }
});

test('a cell that hangs is reported by number and first line (from nbconvert\'s timeout message)', () => {
  const stderr = [
    'nbclient.exceptions.CellTimeoutError: A cell timed out while it was being executed, after 180 seconds.',
    'The message was: Cell execution timed out.',
    'Here is a preview of the cell contents:',
    '-------------------',
    "import * as fseft from 'fseft';",
    'await fseft.initBackend();',
    '-------------------',
  ].join('\n');
  const file = path.join(tempDir('fseft-hung-'), 'n.ipynb');
  fs.writeFileSync(file, JSON.stringify({ cells: [{ cell_type: 'markdown', source: ['# title'] }, { cell_type: 'code', source: ["import * as fseft from 'fseft';\n", 'await fseft.initBackend();'] }] }));
  assert.equal(hungCell(file, stderr), "cell 2: import * as fseft from 'fseft';");
  assert.equal(hungCell(file, 'Traceback: SyntaxError'), undefined);
  const listed = stderr.replace("import * as fseft from 'fseft';\nawait fseft.initBackend();", `["import * as fseft from 'fseft';", 'await fseft.initBackend();']`);
  assert.equal(hungCell(file, listed), "cell 2: import * as fseft from 'fseft';", 'the list form of newer nbconvert');
});

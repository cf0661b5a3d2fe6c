import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatPercent, fromIpynb, parsePercent, toIpynb } from '../scripts/notebooks';
import { REPO_ROOT } from './helpers';

const NOTEBOOKS = path.join(REPO_ROOT, 'notebooks');

test('every notebook is built from its TypeScript source, and imports back into the same source', () => {
  const sources = fs.readdirSync(path.join(NOTEBOOKS, 'src')).filter((f) => f.endsWith('.ts')).sort();
  const notebooks = fs.readdirSync(NOTEBOOKS).filter((f) => f.endsWith('.ipynb')).sort();
  assert.deepEqual(sources.map((f) => f.slice(0, -3)), notebooks.map((f) => f.slice(0, -6)), 'one source per notebook');
  for (const file of sources) {
    const name = file.slice(0, -3);
    const source = fs.readFileSync(path.join(NOTEBOOKS, 'src', file), 'utf8');
    const notebook = fs.readFileSync(path.join(NOTEBOOKS, `${name}.ipynb`), 'utf8');
    assert.equal(notebook, toIpynb(name, parsePercent(source)), `${name}.ipynb is out of date: npm run notebooks:build`);
    assert.equal(formatPercent(fromIpynb(notebook)), source, `${name}: importing the notebook changes its source`);
  }
});

test('the percent format: markdown as comments, code as is, blank lines inside cells kept, outputs dropped on import', () => {
  const cells = parsePercent('// %% [markdown]\n// # Title\n//\n// text\n\n// %%\nconst a = 1;\n\nconst b = 2;\n');
  assert.deepEqual(cells, [{ kind: 'markdown', source: '# Title\n\ntext' }, { kind: 'code', source: 'const a = 1;\n\nconst b = 2;' }]);
  const executed = JSON.parse(toIpynb('99-x', cells));
  executed.cells[1].outputs = [{ output_type: 'stream', name: 'stdout', text: ['1\n'] }];
  executed.cells[1].execution_count = 3;
  assert.deepEqual(fromIpynb(JSON.stringify(executed)), cells);
  assert.throws(() => parsePercent('const stray = 1;\n// %%\n'), /before the first cell marker/);
});

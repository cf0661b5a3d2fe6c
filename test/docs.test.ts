import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT, tempDir } from './helpers';

const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

test('the README stays a five-minute read', () => {
  assert.ok(Buffer.byteLength(readme) <= 10_240, `README.md is ${Buffer.byteLength(readme)} bytes; move detail to docs/`);
});

test('every file, link and function the README and docs name exists', () => {
  const pages = ['README.md', ...fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  for (const page of pages) {
    const text = fs.readFileSync(path.join(REPO_ROOT, page), 'utf8');
    const base = path.dirname(path.join(REPO_ROOT, page));
    for (const [, target] of text.matchAll(/\]\(([^)#:\s]+)\)/g)) {
      assert.ok(fs.existsSync(path.resolve(base, target)), `${page} links to ${target}, which does not exist`);
    }
    for (const [, file] of text.matchAll(/`((?:lib|test|bench|scripts)\/[\w./-]+\.(?:ts|sh|py))`/g)) {
      assert.ok(fs.existsSync(path.join(REPO_ROOT, file)), `${page} names ${file}, which does not exist`);
    }
  }
  // "`name` in `lib/...`": the function is defined in that file.
  for (const [, name, file] of readme.matchAll(/`(\w+)` in `(lib\/[\w./-]+\.ts)`/g)) {
    assert.match(fs.readFileSync(path.join(REPO_ROOT, file), 'utf8'), new RegExp(`function ${name}\\b`), `README: ${name} is not defined in ${file}`);
  }
});

test('the TypeScript examples of docs/api.md compile against the library as built', () => {
  const page = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'api.md'), 'utf8');
  const blocks = [...page.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 3, 'docs/api.md shows the common path and the namespaces');
  const dir = tempDir('fseft-docs-ts-');
  blocks.forEach((code, i) => fs.writeFileSync(path.join(dir, `example-${i}.ts`), code.replaceAll("'./dist/lib'", JSON.stringify(path.join(REPO_ROOT, 'dist', 'lib')))));
  const modules = path.join(REPO_ROOT, 'node_modules');
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'es2022', moduleResolution: 'bundler', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [path.join(modules, '@types')], paths: { '*': [path.join(modules, '*')] } },
    include: ['*.ts'],
  }));
  const result = spawnSync(process.execPath, [path.join(modules, 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' });
  assert.equal(result.status, 0, `docs/api.md examples do not compile:\n${result.stdout}${result.stderr}`);
});

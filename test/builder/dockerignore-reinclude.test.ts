/**
 * .dockerignore exceptions (`!`) re-include paths below excluded directories, and docker keeps the parent
 * directories of every re-included path in the context (BuildKit's fsutil walker descends into an excluded
 * directory when an exception could match below it, and sends the parents of what it includes). The allow-list
 * style (`*` or `**`, then `!` lines) is how many projects write their .dockerignore.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

const tree = async (dir: string): Promise<string[]> => {
  const out: string[] = [];
  const visit = async (d: string, rel: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(e.isDirectory() ? `${r}/` : r);
      if (e.isDirectory()) await visit(path.join(d, e.name), r);
    }
  };
  await visit(dir, '');
  return out;
};

test('`**` then `!src/**`: COPY src copies the re-included files, the excluded parent directory src is kept', async () => {
  const context = await sb.context({
    '.dockerignore': '**\n!src/**\n',
    'src/main.c': 'int main;\n',
    'src/lib/util.c': 'util\n',
    'other/x': 'x\n',
    'top.txt': 'top\n',
  });
  const built = await sb.build({ context, dockerfileText: 'FROM scratch\nCOPY src /app/src\n' });
  assert.deepEqual(await tree(path.join(built.fs, 'app')), ['src/', 'src/lib/', 'src/lib/util.c', 'src/main.c']);
  // What the allow list leaves out is still not there.
  await assert.rejects(sb.build({ context, dockerfileText: 'FROM scratch\nCOPY top.txt /x\n' }), /"\/top.txt": not found/);
  await assert.rejects(sb.build({ context, dockerfileText: 'FROM scratch\nCOPY other /o\n' }), /"\/other": not found/);
});

test('`docs/**` then `!docs/README.md`: COPY keep/ docs/ merges only the re-included file', async () => {
  const context = await sb.context({
    '.dockerignore': 'docs/**\n!docs/README.md\n',
    'keep/a.txt': 'a\n',
    'docs/README.md': 'readme\n',
    'docs/internal.md': 'internal\n',
    'docs/sub/deep.md': 'deep\n',
  });
  const built = await sb.build({ context, dockerfileText: 'FROM scratch\nCOPY keep/ docs/ /merged/\n' });
  assert.deepEqual(await tree(path.join(built.fs, 'merged')), ['README.md', 'a.txt']);
});

test('allow list with `*`: `COPY . /app` holds exactly the re-included paths and their parents', async () => {
  const context = await sb.context({
    '.dockerignore': '*\n!package.json\n!app/**/*.js\n!config/prod.yml\n',
    'package.json': '{}\n',
    'secret.env': 'TOKEN=1\n',
    'app/index.js': 'index\n',
    'app/lib/x.js': 'x\n',
    'app/lib/x.test.ts': 'no\n',
    'config/prod.yml': 'prod\n',
    'config/dev.yml': 'dev\n',
    'node_modules/dep/index.js': 'dep\n',
  });
  const built = await sb.build({ context, dockerfileText: 'FROM scratch\nCOPY . /app\n' });
  assert.deepEqual(await tree(path.join(built.fs, 'app')), [
    'app/',
    'app/index.js',
    'app/lib/',
    'app/lib/x.js',
    'config/',
    'config/prod.yml',
    'package.json',
  ]);
});

test('a re-include inside a directory matched by a wildcard pattern is found by a walk that descends into it', async () => {
  const context = await sb.context({
    '.dockerignore': 'build*\n!build-out/keep/**\n',
    'build-out/keep/k.txt': 'k\n',
    'build-out/drop.txt': 'drop\n',
    'build-tmp/t.txt': 't\n',
  });
  const built = await sb.build({ context, dockerfileText: 'FROM scratch\nCOPY . /c/\n' });
  assert.deepEqual(await tree(path.join(built.fs, 'c')), ['.dockerignore', 'build-out/', 'build-out/keep/', 'build-out/keep/k.txt']);
});

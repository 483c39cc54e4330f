import assert from 'node:assert/strict';
import { test } from 'node:test';
import { csvFields, parseOutputArg } from '../../src/cli/specs.js';

test('-o PATH is type=local and -o - is type=tar to stdout, as buildx reads them', () => {
  assert.deepEqual(parseOutputArg('./out'), { type: 'local', dest: './out' });
  assert.deepEqual(parseOutputArg('out'), { type: 'local', dest: 'out' });
  assert.deepEqual(parseOutputArg('-'), { type: 'tar', dest: '-' });
  // dest= alone is still type=local.
  assert.deepEqual(parseOutputArg('dest=d'), { type: 'local', dest: 'd' });
});

test('an unknown --output attribute is an error that names it', () => {
  assert.throws(() => parseOutputArg('type=oci,dest=a.tar,nmae=app:1'), /type=oci: unknown attribute "nmae"/);
  assert.throws(() => parseOutputArg('type=local,dest=d,compression=gzip'), /type=local: unknown attribute "compression"/);
  // Documented buildx attributes kiln does not implement are refused by name too, never silently dropped.
  assert.throws(() => parseOutputArg('type=oci,dest=a.tar,annotation.org.opencontainers.image.title=x'), /does not support the annotation\.org\.opencontainers\.image\.title attribute/);
  assert.throws(() => parseOutputArg('type=docker,dest=a.tar,force-compression=true'), /does not support the force-compression attribute/);
  assert.throws(() => parseOutputArg('type=oci,dest=a.tar,compression=estargz'), /unsupported compression: estargz/);
  assert.throws(() => parseOutputArg('type=oci,dest=a.tar,name=Bad:Name'), /invalid reference format/);
  assert.throws(() => parseOutputArg('type=oci,dest=a.tar,tar=maybe'), /tar must be true or false/);
});

test('name= takes one name or a quoted comma-separated list; compression and tar are read', () => {
  assert.deepEqual(parseOutputArg('type=oci,dest=a.tar,name=app:1'), { type: 'oci', dest: 'a.tar', names: ['app:1'] });
  assert.deepEqual(parseOutputArg('type=docker,dest=a.tar,"name=app:1,reg:5000/app:2",compression=gzip'), {
    type: 'docker',
    dest: 'a.tar',
    names: ['app:1', 'reg:5000/app:2'],
    compression: 'gzip',
  });
  assert.deepEqual(parseOutputArg('type=oci,dest=layout,tar=false,compression=uncompressed'), { type: 'oci', dest: 'layout', compression: 'none', tar: false });
  assert.deepEqual(parseOutputArg('type=image,name=app:3'), { type: 'image', names: ['app:3'] });
  assert.deepEqual(parseOutputArg('type=image,name=h:5000/app:3,push=true'), { type: 'registry', ref: 'h:5000/app:3' });
});

test('csv fields follow Go encoding/csv quoting', () => {
  assert.deepEqual(csvFields('a=1,"b=2,3",c='), ['a=1', 'b=2,3', 'c=']);
  assert.deepEqual(csvFields('"x=say ""hi"""'), ['x=say "hi"']);
  assert.throws(() => csvFields('"a=1'), /unterminated quote/);
});

// The gzip tests with the native addons disabled: parallelGzip falls back to node:zlib.
process.env['KILN_NATIVE'] = '0';
await import('./deflate.test.js');

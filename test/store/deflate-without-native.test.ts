// The gzip tests with the native addons disabled: the compressor falls back to node:zlib.
process.env['KILN_NATIVE'] = '0';
await import('./deflate.test.js');

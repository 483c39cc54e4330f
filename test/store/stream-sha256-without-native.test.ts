// The layer-hashing tests with the native addon disabled: node:crypto on the main thread.
process.env['KILN_NATIVE'] = '0';
await import('./stream-sha256.test.js');

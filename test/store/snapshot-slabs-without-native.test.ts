// The slab tests with the native addon disabled: small files read synchronously, one at a time.
process.env['KILN_NATIVE'] = '0';
await import('./snapshot-slabs.test.js');

// The process tests with the native addon disabled: the execa fallback.
process.env['KILN_NATIVE'] = '0';
await import('./process.test.js');

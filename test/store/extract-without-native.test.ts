// The extract tests with the native addon disabled: the getfattr/setfattr/mknod command fallback.
process.env['KILN_NATIVE'] = '0';
await import('./extract.test.js');

// The runtime detection tests without the native build.
process.env['KILN_NATIVE'] = '0';
await import('./oci-runtime.test.js');

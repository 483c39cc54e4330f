// The container tests with crun started without the native build (the unshare/sh/mount launch chain).
process.env['KILN_NATIVE'] = '0';
process.env['KILN_RUNTIME'] = 'crun';
await import('./container-cases.js');

// The container tests (container-cases.ts) with crun as the runtime.
process.env['KILN_RUNTIME'] = 'crun';
await import('./container-cases.js');

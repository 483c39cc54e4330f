// The container tests (container-cases.ts) with runc as the runtime.
process.env['KILN_RUNTIME'] = 'runc';
await import('./container-cases.js');

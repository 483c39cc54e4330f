// The overlay tests with the native addon disabled: the mount/umount command fallback.
process.env['KILN_NATIVE'] = '0';
await import('./overlay.test.js');

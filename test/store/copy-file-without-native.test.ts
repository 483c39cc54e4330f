// The copy-file tests with the native addon disabled: the chunked copy instead of copy_file_range.
process.env['KILN_NATIVE'] = '0';
await import('./copy-file.test.js');

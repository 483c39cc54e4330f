/**
 * NODE_EXTRA_CA_CERTS, loaded when kiln first needs it instead of while Node starts.
 *
 * Node 20 reads the file NODE_EXTRA_CA_CERTS names, and builds its whole root store with it, before any of
 * kiln runs: on a machine where it names the system bundle that is ~40 ms of a ~175 ms cached `kiln build`,
 * which opens no TLS connection at all. So the `kiln` bin (bin/kiln) moves the variable to KILN_EXTRA_CA_CERTS
 * before it starts Node, and kiln calls {@link trustExtraCaCerts} before it may open a TLS connection (an https
 * registry, a token server, ADD of a URL). From then on, every TLS connection made without a `ca` or context of
 * its own (fetch's and node:https's included) trusts Node's bundled roots plus those certificates: what
 * NODE_EXTRA_CA_CERTS does. Node programs kiln starts (credential helpers) get the variable back
 * ({@link extraCaEnv}). A program that imports kiln has its own NODE_EXTRA_CA_CERTS applied by Node as usual,
 * and none of this happens.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Tls from 'node:tls';
import { messageOf } from '../errors.js';

/** Where bin/kiln puts NODE_EXTRA_CA_CERTS. */
export const KILN_EXTRA_CA_CERTS = 'KILN_EXTRA_CA_CERTS';

/**
 * Marks node:tls once its trust is extended. The mark lives on the module it describes, not in a variable of ours:
 * what it guards (tls.connect, the default CA list) is process-wide by nature, whoever loaded this module.
 */
const APPLIED = Symbol.for('kiln.extraCaCertsApplied');

/** The options a caller chose its trust with: such a connection is left alone. */
const OWN_TRUST = ['ca', 'secureContext', 'cert', 'key', 'pfx'] as const;

/**
 * Makes every later TLS connection of this process trust the certificates of the KILN_EXTRA_CA_CERTS file on
 * top of Node's bundled roots (once; nothing when the variable is unset). An unreadable file gets Node's own
 * warning for NODE_EXTRA_CA_CERTS and changes nothing, as in Node.
 */
export function trustExtraCaCerts(): void {
  const file = process.env[KILN_EXTRA_CA_CERTS];
  if (file === undefined || file === '') return;
  // Loaded here, not at the top: most kiln commands never touch TLS, and node:tls costs to load.
  const tls = createRequire(import.meta.url)('node:tls') as typeof Tls & { setDefaultCACertificates?: (certs: string[]) => void; [APPLIED]?: true };
  if (tls[APPLIED]) return;
  tls[APPLIED] = true;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${messageOf(err)}`);
    return;
  }
  // A string may hold many PEM certificates, as the file does.
  const ca = [...tls.rootCertificates, pem];
  if (typeof tls.setDefaultCACertificates === 'function') {
    tls.setDefaultCACertificates(ca); // Node 22.15+: the supported way
    return;
  }
  // Node 20: every TLS client connection (node:https, and fetch's undici, which calls tls.connect through the
  // module) without trust options of its own gets one shared context with both sets of certificates.
  const secureContext = tls.createSecureContext({ ca });
  const connect = tls.connect;
  const patched = function (this: unknown, ...args: unknown[]): Tls.TLSSocket {
    const at = args.findIndex((a) => typeof a === 'object' && a !== null);
    const options = args[at] as Record<string, unknown> | undefined;
    if (options !== undefined && OWN_TRUST.every((k) => options[k] === undefined)) args[at] = { ...options, secureContext };
    return (connect as (...a: unknown[]) => Tls.TLSSocket).apply(this, args);
  };
  tls.connect = patched as typeof tls.connect;
}

/** Environment for a child process that may be a Node program: NODE_EXTRA_CA_CERTS back where bin/kiln took it from. */
export function extraCaEnv(): Record<string, string> {
  const file = process.env[KILN_EXTRA_CA_CERTS];
  return file === undefined || file === '' ? {} : { NODE_EXTRA_CA_CERTS: file };
}

/** Where the store lives when nobody says: the one definition the API, the CLI and `LayerStore.open` share. */
import { homedir } from 'node:os';
import path from 'node:path';

/** The default store root: `$KILN_ROOT` (when set and not empty), else `~/.cache/kiln`. */
export function defaultStoreRoot(): string {
  const env = process.env.KILN_ROOT;
  return env ? path.resolve(env) : path.join(homedir(), '.cache', 'kiln');
}

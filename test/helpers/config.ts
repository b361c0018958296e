/** The problems a tenants file is refused with, as tests read them. */
import { ConfigError } from '../../src/config/errors.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';

/** Every problem parseTenantsFile reports for `text` (with /etc/keyward as its directory); [] when it is valid. */
export function tenantsFileProblems(text: string): readonly string[] {
  try {
    parseTenantsFile(text, { baseDir: '/etc/keyward', defaultKmsTimeoutMs: 1000 });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

/**
 * Analyses a .cpuprofile written by `npm run bench -- --cpu-prof` (or any node --cpu-prof):
 *
 *   npx tsx bench/profile.ts <file.cpuprofile> [bench/results/<name>.json] [--top N]
 *
 * With the results JSON of the run that made the profile, only the samples of its
 * measured runs are counted, run by run; without it, the whole profile.
 */
import { readFileSync } from 'node:fs';
import { analyseProfile, formatProfile, type Window } from './lib/profile.js';

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 20;
const [file, resultsFile] = args;
if (!file) {
  console.error('usage: npx tsx bench/profile.ts <file.cpuprofile> [bench/results/<name>.json] [--top N]');
  process.exit(2);
}
let windows: Window[] = [];
if (resultsFile) {
  const results = JSON.parse(readFileSync(resultsFile, 'utf8')) as { profile?: { asked?: Window[] } };
  windows = results.profile?.asked ?? [];
}
console.log(formatProfile(analyseProfile(file, windows), { top }));

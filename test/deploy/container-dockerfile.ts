/**
 * Reading the Dockerfile and .dockerignore without Docker, for test/deploy/container.test.ts and
 * compose.test.ts: a small Dockerfile parser (parser directives, comments, line continuations,
 * BuildKit heredocs, stages, exec and shell forms) and a .dockerignore matcher with Docker's
 * semantics (patternmatcher: `*`, `?`, `**`, `!` exceptions, the last matching pattern decides,
 * and a pattern that matches a directory matches everything under it).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

export interface Heredoc {
  readonly delimiter: string;
  readonly body: string;
}

export interface Instruction {
  /** Upper case: FROM, RUN, COPY, … */
  readonly keyword: string;
  /** Everything after the keyword, continuation lines joined, heredoc bodies not included. */
  readonly args: string;
  readonly heredocs: readonly Heredoc[];
  /** 1-based line of the keyword. */
  readonly line: number;
}

export interface Stage {
  readonly index: number;
  readonly name: string | undefined;
  /** The FROM reference as written. */
  readonly from: string;
  /** With global ARG defaults substituted. */
  readonly base: string;
  /** The stage this one is built on, when `base` names an earlier stage. */
  readonly parent: Stage | undefined;
  /** Instructions after FROM. */
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  readonly directives: Readonly<Record<string, string>>;
  /** ARGs before the first FROM, with their defaults. */
  readonly globalArgs: Readonly<Record<string, string | undefined>>;
  readonly stages: readonly Stage[];
  stage(name: string): Stage;
  /** The stage and its ancestors within this file, root first. */
  chain(name: string): Stage[];
  /** Instructions of a stage and its ancestors, root first. */
  effective(name: string): Instruction[];
}

const HEREDOC = /<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;

export function substitute(text: string, vars: Readonly<Record<string, string | undefined>>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, a: string | undefined, b: string | undefined) => {
    const value = vars[(a ?? b)!];
    return value === undefined ? whole : value;
  });
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split('\n');
  const directives: Record<string, string> = {};
  let i = 0;
  // Parser directives: `# key=value` lines at the very top.
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-zA-Z]+)\s*=\s*(.+?)\s*$/.exec(lines[i]!);
    if (!m) break;
    directives[m[1]!.toLowerCase()] = m[2]!;
  }
  const instructions: Instruction[] = [];
  while (i < lines.length) {
    const raw = lines[i]!;
    const start = i + 1;
    i++;
    if (/^\s*(#|$)/.test(raw)) continue;
    let logical = raw;
    while (/\\\s*$/.test(logical) && i < lines.length) {
      logical = logical.replace(/\\\s*$/, ' ');
      const next = lines[i]!;
      i++;
      if (/^\s*#/.test(next)) continue;
      logical += next;
    }
    const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(logical);
    if (!m) throw new Error(`line ${start}: cannot read "${raw}"`);
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    const heredocs: Heredoc[] = [];
    if (keyword === 'RUN' || keyword === 'COPY' || keyword === 'ADD') {
      for (const h of args.matchAll(HEREDOC)) {
        const strip = h[1] === '-';
        const delimiter = h[3]!;
        const body: string[] = [];
        for (;;) {
          if (i >= lines.length) throw new Error(`line ${start}: heredoc ${delimiter} is not closed`);
          const l = lines[i]!;
          i++;
          if ((strip ? l.replace(/^\t+/, '') : l) === delimiter) break;
          body.push(strip ? l.replace(/^\t+/, '') : l);
        }
        heredocs.push({ delimiter, body: `${body.join('\n')}\n` });
      }
    }
    instructions.push({ keyword, args, heredocs, line: start });
  }

  const globalArgs: Record<string, string | undefined> = {};
  const stages: Stage[] = [];
  let current: { index: number; name: string | undefined; from: string; base: string; parent: Stage | undefined; instructions: Instruction[] } | undefined;
  const finish = (): void => {
    if (current) stages.push(current);
  };
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      finish();
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const from = words[0]!;
      const name = words.length >= 3 && words[1]!.toUpperCase() === 'AS' ? words[2]! : undefined;
      const base = substitute(from, globalArgs);
      current = { index: stages.length, name, from, base, parent: stages.find((s) => s.name === base), instructions: [] };
    } else if (!current) {
      if (ins.keyword !== 'ARG') throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
      const [key, value] = ins.args.split('=', 2) as [string, string | undefined];
      globalArgs[key.trim()] = value?.trim().replace(/^"(.*)"$/, '$1');
    } else {
      current.instructions.push(ins);
    }
  }
  finish();

  const stage = (name: string): Stage => {
    const found = stages.find((s) => s.name === name);
    if (!found) throw new Error(`no stage named ${name}`);
    return found;
  };
  const chain = (name: string): Stage[] => {
    const out: Stage[] = [];
    for (let s: Stage | undefined = stage(name); s; s = s.parent) out.unshift(s);
    return out;
  };
  return {
    directives,
    globalArgs,
    stages,
    stage,
    chain,
    effective: (name) => chain(name).flatMap((s) => s.instructions),
  };
}

/** The last instruction with this keyword in a stage's chain. */
export function last(dockerfile: Dockerfile, stageName: string, keyword: string): Instruction | undefined {
  return dockerfile.effective(stageName).filter((i) => i.keyword === keyword).at(-1);
}

/** JSON (exec) form, or undefined for shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.trim().startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`not an exec form: ${args}`);
  return parsed;
}

/** The environment a stage's ENV instructions (and its ancestors') give its containers. */
export function stageEnv(dockerfile: Dockerfile, stageName: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of dockerfile.effective(stageName)) {
    if (ins.keyword !== 'ENV') continue;
    for (const m of ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
      const raw = m[2]!;
      env[m[1]!] = substitute(raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw, env);
    }
  }
  return env;
}

export interface CopyInstruction {
  readonly flags: Readonly<Record<string, string>>;
  readonly sources: readonly string[];
  readonly dest: string;
  readonly heredoc: boolean;
}

export function parseCopy(ins: Instruction): CopyInstruction {
  const words = ins.args.split(/\s+/).filter((w) => w !== '');
  const flags: Record<string, string> = {};
  while (words[0]?.startsWith('--')) {
    const [k, v] = words.shift()!.slice(2).split('=', 2) as [string, string | undefined];
    flags[k] = v ?? 'true';
  }
  const json = execForm(words.join(' '));
  const all = json ?? words;
  return { flags, sources: all.slice(0, -1), dest: all.at(-1)!, heredoc: ins.heredocs.length > 0 };
}

export interface Healthcheck {
  readonly options: Readonly<Record<string, string>>;
  readonly command: readonly string[] | string;
}

export function parseHealthcheck(ins: Instruction): Healthcheck {
  const options: Record<string, string> = {};
  let rest = ins.args;
  for (;;) {
    const m = /^--([a-z-]+)=(\S+)\s+/.exec(rest);
    if (!m) break;
    options[m[1]!] = m[2]!;
    rest = rest.slice(m[0].length);
  }
  const cmd = /^CMD\s+([\s\S]*)$/.exec(rest);
  if (!cmd) return { options, command: rest.trim() };
  return { options, command: execForm(cmd[1]!) ?? cmd[1]!.trim() };
}

// ---------------------------------------------------------------------------------------------
// .dockerignore

interface IgnorePattern {
  readonly exclusion: boolean;
  readonly regex: RegExp;
  readonly text: string;
}

function patternRegex(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else {
          re += '.*';
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '\\' && i + 1 < pattern.length) {
      i++;
      re += pattern[i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    } else {
      re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}

/** Normalises a pattern as Docker does: trims, drops a leading `/` and `./`, cleans `//` and a trailing `/`. */
function clean(pattern: string): string {
  let p = pattern.trim().replace(/\/+/g, '/');
  while (p.startsWith('./')) p = p.slice(2);
  p = p.replace(/^\/+/, '').replace(/\/$/, '');
  return p === '' ? '.' : p;
}

export interface DockerIgnore {
  readonly patterns: readonly string[];
  /** True when the path (relative to the context, `/`-separated) is left out of the build context. */
  excluded(path: string): boolean;
}

export function parseDockerignore(text: string): DockerIgnore {
  const patterns: IgnorePattern[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const exclusion = line.startsWith('!');
    const p = clean(exclusion ? line.slice(1) : line);
    patterns.push({ exclusion, regex: patternRegex(p), text: line });
  }
  return {
    patterns: patterns.map((p) => p.text),
    excluded(path) {
      const parts = clean(path).split('/');
      // Each pattern is tried against the path and each of its parent directories.
      const candidates = parts.map((_, n) => parts.slice(0, n + 1).join('/'));
      let out = false;
      for (const p of patterns) {
        if (candidates.some((c) => p.regex.test(c))) out = !p.exclusion;
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Relative TypeScript imports reachable from `entries` (static and dynamic, `.js` specifiers
 * mapped to the `.ts` files tsx runs), as paths relative to `root`.
 */
export function importClosure(root: string, entries: readonly string[]): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    const rel = relative(root, file).split('\\').join('/');
    if (seen.has(rel)) return;
    seen.add(rel);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)'(\.{1,2}\/[^']+)'/g)) {
      visit(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    }
  };
  for (const entry of entries) visit(join(root, entry));
  return seen;
}

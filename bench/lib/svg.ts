/**
 * bench/results/<name>.svg: grouped horizontal bars, Keyward vs the bare Fastify ceiling,
 * requests/s per scenario. Two panels, each with its own linear scale: single-key
 * requests (thousands per second) and batch requests (tens to hundreds per second),
 * which one scale would flatten. Hand-written SVG, no charting library or service.
 */
import type { BenchResults, ScenarioResult } from './results.js';

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

const fmt = (v: number): string => (v >= 10_000 ? `${(v / 1000).toFixed(1)}k` : v >= 100 ? v.toFixed(0) : v.toFixed(1));

const KEYWARD = '#2f6db5';
const CEILING = '#b8b8b8';

function panel(title: string, rows: readonly ScenarioResult[], y0: number, width: number): { svg: string; height: number } {
  const labelW = 360;
  const right = 150;
  const barH = 14;
  const gap = 4;
  const groupH = barH * 2 + gap + 16;
  const plotW = width - labelW - right;
  const max = niceMax(Math.max(1, ...rows.flatMap((r) => [r.keyward.rps, r.ceiling?.rps ?? 0])));
  const top = y0 + 28;
  const plotH = rows.length * groupH;
  const parts: string[] = [`<text x="16" y="${y0 + 16}" class="h">${esc(title)}</text>`];
  for (let i = 0; i <= 5; i++) {
    const x = labelW + (plotW * i) / 5;
    parts.push(`<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${top + plotH}" class="grid"/>`);
    parts.push(`<text x="${x}" y="${top + plotH + 14}" class="tick" text-anchor="middle">${i === 0 ? '0' : fmt((max * i) / 5)}</text>`);
  }
  rows.forEach((r, i) => {
    const gy = top + i * groupH;
    parts.push(`<text x="${labelW - 8}" y="${gy + barH + 2}" class="label" text-anchor="end">${esc(r.label)}</text>`);
    const kw = (plotW * r.keyward.rps) / max;
    parts.push(`<rect x="${labelW}" y="${gy}" width="${kw.toFixed(1)}" height="${barH}" fill="${KEYWARD}"><title>Keyward ${r.keyward.rps.toFixed(0)} req/s</title></rect>`);
    const keys = r.keysPerRequest > 1 ? `, ${fmt(r.keysPerSecond)} keys/s` : '';
    const ratio = r.ratio === undefined ? '' : ` (${(100 * r.ratio).toFixed(0)}% of ceiling${keys})`;
    parts.push(`<text x="${labelW + kw + 4}" y="${gy + barH - 3}" class="val">${fmt(r.keyward.rps)} req/s${ratio}</text>`);
    if (r.ceiling) {
      const c = (plotW * r.ceiling.rps) / max;
      parts.push(`<rect x="${labelW}" y="${gy + barH + gap}" width="${c.toFixed(1)}" height="${barH}" fill="${CEILING}"><title>ceiling ${r.ceiling.rps.toFixed(0)} req/s</title></rect>`);
      parts.push(`<text x="${labelW + c + 4}" y="${gy + 2 * barH + gap - 3}" class="val">${fmt(r.ceiling.rps)} req/s</text>`);
    }
  });
  parts.push(`<text x="${labelW + plotW / 2}" y="${top + plotH + 30}" class="tick" text-anchor="middle">requests per second</text>`);
  return { svg: parts.join('\n'), height: plotH + 28 + 44 };
}

export function chart(results: BenchResults, ordered: readonly ScenarioResult[]): string {
  const width = 1000;
  const singles = ordered.filter((r) => r.keysPerRequest === 1);
  const batches = ordered.filter((r) => r.keysPerRequest > 1);
  const m = results.machine;
  const s = results.settings;
  const header = [
    `Keyward vs bare Fastify ceiling — requests/s (${s.mode} run, ${s.durationS} s per scenario after ${s.warmupS} s warm-up)`,
    `${m.cpuModel}, ${m.cores} cores, node ${m.node}, ${m.date.slice(0, 10)}, commit ${m.gitCommit.slice(0, 10)}${m.gitDirty ? '+dirty' : ''}; singles ${s.connections} connections × pipelining ${s.pipelining}, batches ${s.batchConnections} connections`,
  ];
  const busiest = Math.max(0, ...ordered.map((r) => Math.max(r.foreignCpuPercent.keyward ?? 0, r.foreignCpuPercent.ceiling ?? 0)));
  if (busiest >= 25) header.push(`Warning: other processes on this machine used up to ${busiest.toFixed(0)}% of a core during some measured runs: these figures are skewed low (see the .md).`);
  let y = header.length > 2 ? 72 : 56;
  const bodies: string[] = [];
  for (const [title, rows] of [
    ['Single-key requests', singles],
    ['Batch requests (keys/s = requests/s × batch size)', batches],
  ] as const) {
    if (rows.length === 0) continue;
    const p = panel(title, rows, y, width);
    bodies.push(p.svg);
    y += p.height + 10;
  }
  const legendY = y + 4;
  const height = legendY + 24;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">
<style>
  .t { font-size: 15px; font-weight: bold; fill: #222; }
  .s { font-size: 11px; fill: #555; }
  .h { font-size: 13px; font-weight: bold; fill: #333; }
  .label { font-size: 12px; fill: #222; }
  .val { font-size: 11px; fill: #333; }
  .tick { font-size: 10px; fill: #666; }
  .grid { stroke: #e4e4e4; stroke-width: 1; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="16" y="22" class="t">${esc(header[0]!)}</text>
<text x="16" y="40" class="s">${esc(header[1]!)}</text>
${header[2] ? `<text x="16" y="56" class="s" style="fill:#b00">${esc(header[2])}</text>` : ''}
${bodies.join('\n')}
<rect x="360" y="${legendY}" width="14" height="12" fill="${KEYWARD}"/><text x="380" y="${legendY + 10}" class="label">Keyward (${esc(s.keyward.includes('tsx') ? 'src/ through tsx' : 'dist/main.js')})</text>
<rect x="540" y="${legendY}" width="14" height="12" fill="${CEILING}"/><text x="560" y="${legendY + 10}" class="label">ceiling: bare Fastify, same body sizes, no auth/crypto/logging</text>
</svg>
`;
}

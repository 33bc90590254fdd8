// Targeting editor state: the form's view of a Targeting object (docs/api/openapi.yaml) and the
// conversions both ways. Keys the editor does not show (regions, languages, segments, ...) are kept
// untouched. Pure: unit-tested in test/targeting.test.ts.
import type {Targeting} from '../api/client';

export const DEVICE_TYPES = ['desktop', 'mobile', 'tablet', 'ctv', 'other'] as const;
export const OSES = ['windows', 'macos', 'linux', 'ios', 'android', 'chromeos', 'other'] as const;
export const BROWSERS = ['chrome', 'firefox', 'safari', 'edge', 'opera', 'samsung', 'other'] as const;
export const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;

export type Grid = boolean[][]; // [day 0..6 (0 = Sunday)][hour 0..23]

export interface TargetingState {
  countries_include: string[];
  countries_exclude: string[];
  device_types: string[];
  os: string[];
  browsers: string[];
  grid: Grid;
  keywords_any: string[];
  keywords_all: string[];
  keywords_none: string[];
  sites_include: number[];
  sites_exclude: number[];
  placements_include: number[];
  placements_exclude: number[];
  rest: Record<string, unknown>; // keys this editor does not edit, kept as they were
}

const EDITED = new Set([
  'countries_include', 'countries_exclude', 'device_types', 'os', 'browsers', 'dayparts', 'keywords',
  'sites_include', 'sites_exclude', 'placements_include', 'placements_exclude',
]);

export function emptyGrid(fill = false): Grid {
  return Array.from({length: 7}, () => Array.from({length: 24}, () => fill));
}

export function gridIsAll(g: Grid): boolean {
  return g.every((row) => row.every(Boolean));
}

export function gridIsEmpty(g: Grid): boolean {
  return g.every((row) => row.every((c) => !c));
}

/** dayparts [{days, hours}] -> grid; no dayparts means every hour. */
export function daypartsToGrid(dayparts: unknown): Grid {
  if (!Array.isArray(dayparts) || dayparts.length === 0) return emptyGrid(true);
  const g = emptyGrid(false);
  for (const dp of dayparts) {
    if (!dp || typeof dp !== 'object') continue;
    const {days, hours} = dp as {days?: unknown; hours?: unknown};
    const ds = Array.isArray(days) ? days : [0, 1, 2, 3, 4, 5, 6];
    const hs = Array.isArray(hours) ? hours : Array.from({length: 24}, (_, i) => i);
    for (const d of ds) for (const h of hs) if (Number.isInteger(d) && d >= 0 && d < 7 && Number.isInteger(h) && h >= 0 && h < 24) g[d][h] = true;
  }
  return g;
}

/** grid -> dayparts, days with the same hours grouped; [] when every hour is on (no restriction). */
export function gridToDayparts(g: Grid): {days: number[]; hours: number[]}[] {
  if (gridIsAll(g)) return [];
  const byHours = new Map<string, {days: number[]; hours: number[]}>();
  for (let d = 0; d < 7; d++) {
    const hours = g[d].flatMap((on, h) => (on ? [h] : []));
    if (hours.length === 0) continue;
    const key = hours.join(',');
    const e = byHours.get(key);
    if (e) e.days.push(d);
    else byHours.set(key, {days: [d], hours});
  }
  return [...byHours.values()];
}

export function toggleCell(g: Grid, day: number, hour: number): Grid {
  return g.map((row, d) => (d === day ? row.map((c, h) => (h === hour ? !c : c)) : row));
}

/** Sets a whole day (or hour column) on, unless it is all on already, then off. */
export function toggleDay(g: Grid, day: number): Grid {
  const on = !g[day].every(Boolean);
  return g.map((row, d) => (d === day ? row.map(() => on) : row));
}

export function toggleHour(g: Grid, hour: number): Grid {
  const on = !g.every((row) => row[hour]);
  return g.map((row) => row.map((c, h) => (h === hour ? on : c)));
}

/** Paints the rectangle between two cells (a drag) with `value`. */
export function paintRect(g: Grid, a: [number, number], b: [number, number], value: boolean): Grid {
  const [d0, d1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
  const [h0, h1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
  return g.map((row, d) => row.map((c, h) => (d >= d0 && d <= d1 && h >= h0 && h <= h1 ? value : c)));
}

/** "news, Sports\nparks" -> ["news", "sports", "parks"]: trimmed, lower case, no duplicates. */
export function parseList(text: string): string[] {
  const out: string[] = [];
  for (const w of text.split(/[,\n]/)) {
    const k = w.trim().toLowerCase();
    if (k && !out.includes(k)) out.push(k);
  }
  return out;
}

export function toggleIn<T>(list: readonly T[], v: T): T[] {
  return list.includes(v) ? list.filter((x) => x !== v) : [...list, v];
}

const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const ints = (v: unknown): number[] => (Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : []);

export function fromTargeting(t: Targeting | null | undefined): TargetingState {
  const src = (t ?? {}) as Record<string, unknown>;
  const kw = (src.keywords && typeof src.keywords === 'object' ? src.keywords : {}) as Record<string, unknown>;
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) if (!EDITED.has(k)) rest[k] = v;
  return {
    countries_include: strs(src.countries_include),
    countries_exclude: strs(src.countries_exclude),
    device_types: strs(src.device_types),
    os: strs(src.os),
    browsers: strs(src.browsers),
    grid: daypartsToGrid(src.dayparts),
    keywords_any: strs(kw.any),
    keywords_all: strs(kw.all),
    keywords_none: strs(kw.none),
    sites_include: ints(src.sites_include),
    sites_exclude: ints(src.sites_exclude),
    placements_include: ints(src.placements_include),
    placements_exclude: ints(src.placements_exclude),
    rest,
  };
}

/** The Targeting object to send: empty lists are left out (an absent key does not restrict). */
export function toTargeting(s: TargetingState): Targeting {
  const t: Record<string, unknown> = {...s.rest};
  const put = (k: string, v: unknown[]) => {
    if (v.length) t[k] = v;
  };
  put('countries_include', s.countries_include);
  put('countries_exclude', s.countries_exclude);
  put('device_types', s.device_types);
  put('os', s.os);
  put('browsers', s.browsers);
  put('dayparts', gridToDayparts(s.grid));
  const kw: Record<string, string[]> = {};
  if (s.keywords_any.length) kw.any = s.keywords_any;
  if (s.keywords_all.length) kw.all = s.keywords_all;
  if (s.keywords_none.length) kw.none = s.keywords_none;
  if (Object.keys(kw).length) t.keywords = kw;
  put('sites_include', s.sites_include);
  put('sites_exclude', s.sites_exclude);
  put('placements_include', s.placements_include);
  put('placements_exclude', s.placements_exclude);
  return t as Targeting;
}

/** Problems the API would refuse or that can never serve, keyed like the API's field paths. */
export function validateTargeting(s: TargetingState): Record<string, string> {
  const e: Record<string, string> = {};
  const both = <T>(a: T[], b: T[]) => a.filter((x) => b.includes(x));
  const c = both(s.countries_include, s.countries_exclude);
  if (c.length) e['targeting.countries_exclude'] = `Both included and excluded: ${c.join(', ')}`;
  const si = both(s.sites_include, s.sites_exclude);
  if (si.length) e['targeting.sites_exclude'] = `Sites both included and excluded: ${si.join(', ')}`;
  const pl = both(s.placements_include, s.placements_exclude);
  if (pl.length) e['targeting.placements_exclude'] = `Placements both included and excluded: ${pl.join(', ')}`;
  const kw = both(s.keywords_all.concat(s.keywords_any), s.keywords_none);
  if (kw.length) e['targeting.keywords'] = `Keywords both required and excluded: ${kw.join(', ')}`;
  if (gridIsEmpty(s.grid)) e['targeting.dayparts'] = 'Pick at least one hour (or all of them for no restriction)';
  for (const cc of s.countries_include.concat(s.countries_exclude))
    if (!/^[A-Z]{2}$/.test(cc)) e['targeting.countries_include'] = `Not a country code: ${cc}`;
  return e;
}

/** One-line summary for lists. */
export function summarize(t: Targeting | null | undefined): string {
  const s = fromTargeting(t);
  const parts: string[] = [];
  if (s.countries_include.length) parts.push(s.countries_include.join(' '));
  if (s.countries_exclude.length) parts.push('not ' + s.countries_exclude.join(' '));
  if (s.device_types.length) parts.push(s.device_types.join('/'));
  if (!gridIsAll(s.grid)) parts.push('dayparted');
  const kw = s.keywords_any.length + s.keywords_all.length + s.keywords_none.length;
  if (kw) parts.push(`${kw} keyword${kw > 1 ? 's' : ''}`);
  return parts.length ? parts.join(', ') : 'everyone';
}

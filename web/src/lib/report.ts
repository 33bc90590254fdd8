// Report table logic: columns, sorting and CSV. Pure: unit-tested in test/report.test.ts.
import type {ReportRow} from '../api/client';

export type SortDir = 'asc' | 'desc';

export const METRICS = [
  'impressions', 'viewable_impressions', 'clicks', 'ctr', 'conversions', 'spend_micros', 'revenue_micros', 'ecpm_micros',
] as const;
export const TIME_COLUMNS = ['hour', 'day'] as const;

/** Dimension columns first (time, then in group_by order), then the metrics present in the data. */
export function reportColumns(rows: ReportRow[], groupBy: string[]): string[] {
  const keys = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) keys.add(k);
  const cols: string[] = [];
  for (const t of TIME_COLUMNS) if (keys.has(t)) cols.push(t);
  for (const g of groupBy) {
    for (const k of [g, g + '_id', g + '_name']) if (keys.has(k) && !cols.includes(k)) cols.push(k);
  }
  for (const m of METRICS) if (keys.has(m)) cols.push(m);
  for (const k of keys) if (!cols.includes(k)) cols.push(k); // anything else the API adds, last
  return cols;
}

function cmp(a: unknown, b: unknown): number {
  const an = a === null || a === undefined || a === '';
  const bn = b === null || b === undefined || b === '';
  if (an || bn) return an && bn ? 0 : an ? 1 : -1; // empty cells last, whatever the direction
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const na = Number(a), nb = Number(b);
  if (typeof a === 'string' && typeof b === 'string' && a.trim() !== '' && b.trim() !== '' && Number.isFinite(na) && Number.isFinite(nb))
    return na - nb;
  return String(a).localeCompare(String(b), undefined, {numeric: true, sensitivity: 'base'});
}

/** A sorted copy (stable); empty values always go last. */
export function sortRows<T extends Record<string, unknown>>(rows: readonly T[], key: string, dir: SortDir): T[] {
  return rows
    .map((r, i) => [r, i] as const)
    .sort(([a, ia], [b, ib]) => {
      const av = a[key], bv = b[key];
      const empty = (v: unknown) => v === null || v === undefined || v === '';
      if (empty(av) || empty(bv)) return cmp(av, bv) || ia - ib;
      const c = cmp(av, bv);
      return (dir === 'asc' ? c : -c) || ia - ib;
    })
    .map(([r]) => r);
}

/** The next sort state when a header is clicked: a new column sorts descending for metrics. */
export function nextSort(cur: {key: string; dir: SortDir} | null, key: string): {key: string; dir: SortDir} {
  if (cur && cur.key === key) return {key, dir: cur.dir === 'asc' ? 'desc' : 'asc'};
  return {key, dir: (METRICS as readonly string[]).includes(key) ? 'desc' : 'asc'};
}

/** CTR of a row: the API's value when given, else clicks / impressions. */
export function ctrOf(r: Partial<ReportRow>): number | null {
  if (typeof r.ctr === 'number') return r.ctr;
  const i = Number(r.impressions ?? 0), c = Number(r.clicks ?? 0);
  return i > 0 ? c / i : null;
}

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s = typeof v === 'number' ? String(v) : String(v);
  // spreadsheet formula injection: text starting with = + - @ (or tab/CR) is prefixed with '
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

/** RFC 4180 CSV (CRLF line ends) of the given columns. */
export function toCsv(columns: string[], rows: readonly Record<string, unknown>[]): string {
  const lines = [columns.map(csvCell).join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvCell(r[c])).join(','));
  return lines.join('\r\n') + '\r\n';
}

export function columnLabel(c: string): string {
  const map: Record<string, string> = {
    ctr: 'CTR', spend_micros: 'Spend', revenue_micros: 'Revenue', ecpm_micros: 'eCPM',
    viewable_impressions: 'Viewable', campaign_id: 'Campaign', ad_id: 'Ad', placement_id: 'Placement',
    site_id: 'Site', campaign_name: 'Campaign name',
  };
  return map[c] ?? c.charAt(0).toUpperCase() + c.slice(1).replace(/_/g, ' ');
}

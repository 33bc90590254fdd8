// Number, money and date formatting; money is integer micro-units (1 unit = 1,000,000 micros).
export function formatMicros(micros: number | null | undefined, currency?: string): string {
  if (micros === null || micros === undefined) return '—';
  const v = micros / 1e6;
  try {
    if (currency) return new Intl.NumberFormat(undefined, {style: 'currency', currency, maximumFractionDigits: 2}).format(v);
  } catch {
    /* unknown currency code */
  }
  return v.toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 2}) + (currency ? ' ' + currency : '');
}

/** "12.345678" -> 12345678 exactly (no float rounding); null for "" ; NaN for bad input. */
export function parseMoney(text: string): number | null {
  const s = text.trim().replace(/,/g, '');
  if (s === '') return null;
  const m = /^(\d{1,12})(?:\.(\d{0,6}))?$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * 1e6 + Number((m[2] ?? '').padEnd(6, '0'));
}

export function microsToInput(micros: number | null | undefined): string {
  if (micros === null || micros === undefined) return '';
  const whole = Math.trunc(micros / 1e6);
  const frac = String(micros % 1e6).padStart(6, '0').replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : String(whole);
}

export function formatInt(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? '—' : Math.round(n).toLocaleString();
}

export function formatPct(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : (x * 100).toFixed(digits) + '%';
}

export function formatDate(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** "2026-03-01T10:00:00Z" <-> the value of an <input type="datetime-local"> (local time). */
export function isoToLocalInput(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function localInputToIso(v: string): string | null {
  if (!v) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function ymd(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

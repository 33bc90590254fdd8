// Field specs for the resource forms and their inline validation (mirrors docs/api/openapi.yaml;
// the API still validates and its 422 field errors are shown next to the same fields).
import {parseMoney} from './format';

export type FieldType = 'text' | 'int' | 'number' | 'money' | 'select' | 'ref' | 'list' | 'url' | 'email' | 'password' | 'textarea';

export interface FieldSpec {
  name: string;
  label: string;
  type: FieldType;
  required?: boolean;
  createOnly?: boolean; // sent on create only (the API refuses it in PATCH)
  operatorOnly?: boolean; // only admins may set it
  options?: readonly string[];
  ref?: 'advertisers' | 'campaigns' | 'creatives' | 'publishers' | 'sites';
  refFilter?: string; // a field of this form whose value filters the ref list (e.g. creatives by advertiser)
  // the ref list is filtered by `key` of the `from` row this form's `field` points at (an ad's
  // creatives by the advertiser of its campaign)
  refVia?: {field: string; from: 'campaigns'; key: string};
  min?: number;
  max?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: RegExp;
  patternHint?: string;
  hint?: string;
  nullable?: boolean;
  default?: string;
  intList?: boolean; // a 'list' of ids
}

/** Form text -> API value; undefined = leave out, NaN-ish problems are caught by validate(). */
export function toValue(f: FieldSpec, text: string): unknown {
  const t = text.trim();
  switch (f.type) {
    case 'int':
      return t === '' ? (f.nullable ? null : undefined) : Number(t);
    case 'number':
      return t === '' ? (f.nullable ? null : undefined) : Number(t);
    case 'ref':
      return t === '' ? undefined : Number(t);
    case 'money': {
      const m = parseMoney(t);
      return m === null ? (f.nullable ? null : undefined) : m;
    }
    case 'list':
      return t === '' ? [] : t.split(/[,\s]+/).filter(Boolean).map((x) => (f.intList ? Number(x) : x));
    default:
      return t === '' ? (f.nullable ? null : undefined) : f.type === 'textarea' ? text : t;
  }
}

export function validateField(f: FieldSpec, text: string): string | undefined {
  const t = text.trim();
  if (t === '') return f.required ? `${f.label} is required` : undefined;
  if (f.minLength !== undefined && t.length < f.minLength) return `At least ${f.minLength} characters`;
  if (f.maxLength !== undefined && t.length > f.maxLength) return `At most ${f.maxLength} characters`;
  if (f.type === 'int' || f.type === 'ref') {
    if (!/^-?\d+$/.test(t)) return 'A whole number';
  }
  if (f.type === 'number' && !Number.isFinite(Number(t))) return 'A number';
  if (f.type === 'money') {
    const m = parseMoney(t);
    if (m === null || Number.isNaN(m)) return 'An amount like 12.50 (up to 6 decimals)';
  }
  if (f.type === 'int' || f.type === 'number') {
    const n = Number(t);
    if (f.min !== undefined && n < f.min) return `At least ${f.min}`;
    if (f.max !== undefined && n > f.max) return `At most ${f.max}`;
  }
  if (f.type === 'url' && !/^https?:\/\/[^\s]+$/i.test(t)) return 'An http(s) URL';
  if (f.type === 'email' && !/^[^\s@]+@[^\s@]+$/.test(t)) return 'An e-mail address';
  if (f.type === 'select' && f.options && !f.options.includes(t)) return 'Pick one of the options';
  if (f.pattern && !f.pattern.test(t)) return f.patternHint ?? 'Invalid value';
  return undefined;
}

export function toText(f: FieldSpec, v: unknown): string {
  if (v === null || v === undefined) return f.default ?? '';
  if (f.type === 'money' && typeof v === 'number') {
    const whole = Math.trunc(v / 1e6);
    const frac = String(v % 1e6).padStart(6, '0').replace(/0+$/, '');
    return frac ? `${whole}.${frac}` : String(whole);
  }
  if (Array.isArray(v)) return v.join(', ');
  return String(v);
}

export const STATUS3 = ['active', 'paused', 'archived'] as const;

export const SPECS: Record<string, FieldSpec[]> = {
  advertisers: [
    {name: 'name', label: 'Name', type: 'text', required: true, maxLength: 200},
    {name: 'currency', label: 'Currency', type: 'text', required: true, createOnly: true, pattern: /^[A-Z]{3}$/, patternHint: 'An ISO 4217 code like USD', default: 'USD'},
    {name: 'timezone', label: 'Time zone', type: 'text', required: true, maxLength: 64, default: 'UTC', hint: 'IANA name, e.g. Europe/Berlin'},
    {name: 'status', label: 'Status', type: 'select', options: STATUS3, operatorOnly: true, default: 'active'},
    {name: 'credit_limit_micros', label: 'Credit limit', type: 'money', nullable: true, operatorOnly: true, hint: 'empty = none'},
    {name: 'category', label: 'IAB category', type: 'text', nullable: true, maxLength: 16},
  ],
  publishers: [
    {name: 'name', label: 'Name', type: 'text', required: true, maxLength: 200},
    {name: 'currency', label: 'Currency', type: 'text', required: true, createOnly: true, pattern: /^[A-Z]{3}$/, patternHint: 'An ISO 4217 code like USD', default: 'USD'},
    {name: 'revenue_share_ppm', label: 'Revenue share (ppm)', type: 'int', required: true, min: 0, max: 1000000, operatorOnly: true, default: '700000', hint: '700000 = 70%'},
    {name: 'timezone', label: 'Time zone', type: 'text', maxLength: 64, default: 'UTC'},
    {name: 'status', label: 'Status', type: 'select', options: STATUS3, operatorOnly: true, default: 'active'},
  ],
  sites: [
    {name: 'publisher_id', label: 'Publisher', type: 'ref', ref: 'publishers', required: true, createOnly: true},
    {name: 'name', label: 'Name', type: 'text', required: true, maxLength: 200},
    {name: 'kind', label: 'Kind', type: 'select', options: ['site', 'app'], default: 'site'},
    {name: 'domain', label: 'Domain', type: 'text', nullable: true, maxLength: 253, pattern: /^[a-z0-9.-]+$/i, patternHint: 'A domain like example.com'},
    {name: 'bundle_id', label: 'App bundle id', type: 'text', nullable: true, maxLength: 200},
    {name: 'status', label: 'Status', type: 'select', options: STATUS3, default: 'active'},
  ],
  placements: [
    {name: 'site_id', label: 'Site or app', type: 'ref', ref: 'sites', required: true, createOnly: true},
    {name: 'name', label: 'Name', type: 'text', required: true, maxLength: 200},
    {name: 'sizes', label: 'Sizes', type: 'list', hint: 'e.g. 300x250, 728x90; empty = any', pattern: /^(\d+x\d+[,\s]*)*$/, patternHint: 'Sizes like 300x250, separated by commas'},
    {name: 'ad_types', label: 'Ad types', type: 'list', default: 'image, html', hint: 'image, html, native, vast'},
    {name: 'floor_cpm_micros', label: 'Floor CPM', type: 'money'},
    {name: 'status', label: 'Status', type: 'select', options: STATUS3, default: 'active'},
  ],
  'demand-partners': [
    {name: 'name', label: 'Name', type: 'text', required: true, maxLength: 200},
    {name: 'bidder_code', label: 'Bidder code', type: 'text', required: true, maxLength: 32, pattern: /^[A-Za-z0-9_-]+$/, patternHint: 'Letters, digits, - and _'},
    {name: 'endpoint', label: 'OpenRTB endpoint', type: 'url', required: true, maxLength: 2048},
    {name: 'timeout_ms', label: 'Timeout (ms)', type: 'int', min: 1, max: 10000, default: '200'},
    {name: 'qps_limit', label: 'QPS limit', type: 'int', min: 0, max: 1000000, default: '0', hint: '0 = unlimited'},
    {name: 'bid_adjustment', label: 'Bid adjustment', type: 'number', min: 0, max: 10, default: '1'},
    {name: 'status', label: 'Status', type: 'select', options: STATUS3, default: 'active'},
  ],
  ads: [
    {name: 'campaign_id', label: 'Campaign', type: 'ref', ref: 'campaigns', required: true, createOnly: true},
    {name: 'creative_id', label: 'Creative', type: 'ref', ref: 'creatives', required: true,
      refVia: {field: 'campaign_id', from: 'campaigns', key: 'advertiser_id'}},
    {name: 'landing_url', label: 'Landing URL', type: 'url', nullable: true, maxLength: 2048},
    {name: 'weight', label: 'Weight', type: 'int', min: 0, max: 1000000, default: '1'},
    {name: 'status', label: 'Status', type: 'select', options: STATUS3, default: 'active'},
  ],
  users: [
    {name: 'email', label: 'E-mail', type: 'email', required: true, maxLength: 254, createOnly: true},
    {name: 'password', label: 'Password', type: 'password', required: true, minLength: 8, maxLength: 1024, createOnly: true},
    {name: 'role', label: 'Role', type: 'select', options: ['admin', 'advertiser', 'publisher', 'viewer'], required: true, default: 'advertiser', createOnly: true},
    {name: 'advertiser_ids', label: 'Advertiser ids', type: 'list', intList: true, hint: 'for advertiser users, e.g. 1, 2', createOnly: true, pattern: /^[\d,\s]*$/, patternHint: 'Numbers separated by commas'},
    {name: 'publisher_ids', label: 'Publisher ids', type: 'list', intList: true, hint: 'for publisher users', createOnly: true, pattern: /^[\d,\s]*$/, patternHint: 'Numbers separated by commas'},
  ],
};

/** The query that narrows a ref field's choices: by another field of the form (refFilter), or by a
 * key of the row another field points at (refVia; `via` is that row once loaded). */
export function refQuery(f: FieldSpec, vals: Record<string, string>, via?: Record<string, unknown>): Record<string, string> | undefined {
  if (f.refFilter && vals[f.refFilter]) return {[f.refFilter]: vals[f.refFilter]};
  if (f.refVia && vals[f.refVia.field] && via) {
    const k = via[f.refVia.key];
    if (k !== undefined && k !== null && k !== '') return {[f.refVia.key]: String(k)};
  }
  return undefined;
}

// The typed API client. Types come from src/api/schema.d.ts, generated from docs/api/openapi.yaml
// by openapi-typescript (`npm run gen:api`; `npm run check:api` and a unit test fail when the two
// drift). The session token lives in sessionStorage (this tab only, never a cookie).
import type {components, paths} from './schema';
import {ApiError, toApiError} from './errors';

export type Schemas = components['schemas'];
export type Advertiser = Schemas['Advertiser'];
export type Campaign = Schemas['Campaign'];
export type Ad = Schemas['Ad'];
export type Creative = Schemas['Creative'];
export type Publisher = Schemas['Publisher'];
export type Site = Schemas['Site'];
export type Placement = Schemas['Placement'];
export type DemandPartner = Schemas['DemandPartner'];
export type User = Schemas['User'];
export type ApiKey = Schemas['ApiKey'];
export type ApiKeyCreated = Schemas['ApiKeyCreated'];
export type AuditEntry = Schemas['AuditEntry'];
export type Targeting = Schemas['Targeting'];
export type LoginResponse = Schemas['LoginResponse'];

/** Resource collections of the API, each `{data, next_cursor}` (paths checked against the spec). */
export const RESOURCES = {
  advertisers: '/api/v1/advertisers',
  campaigns: '/api/v1/campaigns',
  ads: '/api/v1/ads',
  creatives: '/api/v1/creatives',
  publishers: '/api/v1/publishers',
  sites: '/api/v1/sites',
  placements: '/api/v1/placements',
  'demand-partners': '/api/v1/demand-partners',
  users: '/api/v1/users',
  'api-keys': '/api/v1/api-keys',
  'audit-log': '/api/v1/audit-log',
} as const satisfies Record<string, keyof paths>;
export type ResourceName = keyof typeof RESOURCES;

export interface ResourceTypes {
  advertisers: Advertiser;
  campaigns: Campaign;
  ads: Ad;
  creatives: Creative;
  publishers: Publisher;
  sites: Site;
  placements: Placement;
  'demand-partners': DemandPartner;
  users: User;
  'api-keys': ApiKey;
  'audit-log': AuditEntry;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

const TOKEN_KEY = 'ap.token';
let memoryToken: string | null = null;
const listeners = new Set<(t: string | null) => void>();

function storage(): Storage | null {
  try {
    return typeof sessionStorage !== 'undefined' ? sessionStorage : null;
  } catch {
    return null;
  }
}

export function getToken(): string | null {
  return memoryToken ?? storage()?.getItem(TOKEN_KEY) ?? null;
}

export function setToken(t: string | null): void {
  memoryToken = t;
  const s = storage();
  if (s) {
    if (t) s.setItem(TOKEN_KEY, t);
    else s.removeItem(TOKEN_KEY);
  }
  listeners.forEach((f) => f(t));
}

export function onTokenChange(f: (t: string | null) => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function qs(q?: Query): string {
  if (!q) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? '?' + s : '';
}

interface ReqInit {
  method?: string;
  body?: unknown;
  raw?: Blob | ArrayBuffer;
  contentType?: string;
  headers?: Record<string, string>;
  accept?: string;
  signal?: AbortSignal;
}

export async function request<T>(url: string, init: ReqInit = {}): Promise<T> {
  const headers: Record<string, string> = {Accept: init.accept ?? 'application/json', ...(init.headers ?? {})};
  const token = getToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  let body: BodyInit | undefined;
  if (init.raw !== undefined) {
    body = init.raw;
    headers['Content-Type'] = init.contentType ?? 'application/octet-stream';
  } else if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(url, {method: init.method ?? 'GET', headers, body, signal: init.signal});
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  const text = res.status === 204 ? '' : await res.text();
  if (!res.ok) {
    const err = toApiError(res.status, text, res.headers.get('Retry-After'));
    if (res.status === 401 && token && !url.endsWith('/auth/login')) setToken(null);
    throw err;
  }
  if ((init.accept ?? 'application/json') !== 'application/json') return text as unknown as T;
  return (text ? JSON.parse(text) : undefined) as T;
}

// ---- auth -----------------------------------------------------------------------------------
export async function login(email: string, password: string): Promise<LoginResponse> {
  const r = await request<LoginResponse>('/api/v1/auth/login', {method: 'POST', body: {email, password}});
  if (r.token) setToken(r.token);
  return r;
}

export async function logout(): Promise<void> {
  try {
    await request<void>('/api/v1/auth/logout', {method: 'POST'});
  } finally {
    setToken(null);
  }
}

export const me = () => request<User>('/api/v1/users/me');

// ---- resources --------------------------------------------------------------------------------
export function list<R extends ResourceName>(r: R, q?: Query, signal?: AbortSignal): Promise<Page<ResourceTypes[R]>> {
  return request<Page<ResourceTypes[R]>>(RESOURCES[r] + qs(q), {signal});
}

/** Every row (following cursors), at most `max`. */
export async function listAll<R extends ResourceName>(r: R, q: Query = {}, max = 5000): Promise<ResourceTypes[R][]> {
  const out: ResourceTypes[R][] = [];
  let cursor: string | null = null;
  do {
    const page: Page<ResourceTypes[R]> = await list(r, {...q, limit: 1000, cursor});
    out.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}

export const getOne = <R extends ResourceName>(r: R, id: number | string) =>
  request<ResourceTypes[R]>(`${RESOURCES[r]}/${id}`);

export const create = <R extends ResourceName>(r: R, body: Partial<ResourceTypes[R]> | Record<string, unknown>) =>
  request<ResourceTypes[R]>(RESOURCES[r], {method: 'POST', body});

export const update = <R extends ResourceName>(r: R, id: number, body: Record<string, unknown>, version?: number) =>
  request<ResourceTypes[R]>(`${RESOURCES[r]}/${id}`, {
    method: 'PATCH',
    body,
    headers: version !== undefined ? {'If-Match': `"${version}"`} : {},
  });

export const archive = <R extends ResourceName>(r: R, id: number) =>
  request<ResourceTypes[R] | undefined>(`${RESOURCES[r]}/${id}`, {method: 'DELETE'});

export const createApiKey = (body: Schemas['ApiKeyCreate']) =>
  request<ApiKeyCreated>('/api/v1/api-keys', {method: 'POST', body});

export const revokeApiKey = (id: number) => request<void>(`/api/v1/api-keys/${id}`, {method: 'DELETE'});

export const placementTag = (id: number) => request<Schemas['PlacementTag']>(`/api/v1/placements/${id}/tag`);

export function uploadCreative(advertiserId: number, name: string, file: Blob): Promise<Creative> {
  return request<Creative>('/api/v1/creatives/upload' + qs({advertiser_id: advertiserId, name}), {
    method: 'POST',
    raw: file,
    contentType: file.type || 'application/octet-stream',
  });
}

// ---- reports (GET /api/v1/reports: issue 5; typed here until the spec documents it) ----------
export type ReportDimension = 'campaign' | 'ad' | 'placement' | 'site' | 'country' | 'device';
export interface ReportRow {
  [dimension: string]: string | number | null | undefined;
  hour?: string;
  day?: string;
  impressions: number;
  viewable_impressions?: number;
  clicks: number;
  conversions?: number;
  ctr?: number;
  spend_micros?: number;
  revenue_micros?: number;
  ecpm_micros?: number;
}
export interface Report {
  rows: ReportRow[];
  totals: Partial<ReportRow>;
}
export interface ReportQuery {
  from: string;
  to: string;
  timezone?: string;
  granularity?: 'hour' | 'day' | 'total';
  group_by?: string;
  campaign_id?: number | string;
}
export const report = (q: ReportQuery) => request<Report>('/api/v1/reports' + qs({...q}));
export const reportCsv = (q: ReportQuery) => request<string>('/api/v1/reports' + qs({...q}), {accept: 'text/csv'});

// ---- operations ---------------------------------------------------------------------------
export async function metricsText(): Promise<string> {
  return request<string>('/metrics', {accept: 'text/plain'});
}

export async function healthz(): Promise<{ok: boolean; text: string}> {
  try {
    const r = await fetch('/healthz');
    return {ok: r.ok, text: await r.text()};
  } catch {
    return {ok: false, text: 'unreachable'};
  }
}

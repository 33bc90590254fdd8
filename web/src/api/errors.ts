// API error mapping: turns any failed response (the API's {"error": {...}} body, a non-JSON body,
// a network failure) into one ApiError with a message for people and per-field messages for forms.
// Pure: unit-tested in test/errors.test.ts.

export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: FieldError[];
  readonly retryAfter: number | null;
  constructor(status: number, code: string, message: string, fields: FieldError[] = [], retryAfter: number | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.retryAfter = retryAfter;
  }
}

const STATUS_TEXT: Record<number, string> = {
  0: 'Cannot reach the server. Check your connection and try again.',
  400: 'The request was malformed.',
  401: 'Your session has ended. Please sign in again.',
  403: 'You do not have permission to do this.',
  404: 'Not found (it may have been removed, or belong to another account).',
  409: 'This conflicts with existing data.',
  412: 'Someone else changed this in the meantime. Reload and try again.',
  413: 'The file or request is too large.',
  415: 'This file type is not supported.',
  422: 'Please correct the highlighted fields.',
  429: 'Too many attempts. Please wait and try again.',
  503: 'The server is busy or unavailable. Try again shortly.',
};

export function messageForStatus(status: number): string {
  if (STATUS_TEXT[status]) return STATUS_TEXT[status];
  if (status >= 500) return `The server failed (HTTP ${status}). Try again later.`;
  return `Request failed (HTTP ${status}).`;
}

/** Builds an ApiError from a response's status, body text and Retry-After header. */
export function toApiError(status: number, bodyText: string, retryAfterHeader: string | null = null): ApiError {
  let code = 'http_' + status;
  let message = messageForStatus(status);
  let fields: FieldError[] = [];
  try {
    const body = JSON.parse(bodyText);
    const e = body && typeof body === 'object' ? body.error : null;
    if (e && typeof e === 'object') {
      if (typeof e.code === 'string') code = e.code;
      if (typeof e.message === 'string' && e.message) message = status === 422 ? STATUS_TEXT[422] : e.message;
      if (Array.isArray(e.fields)) {
        fields = e.fields
          .filter((f: unknown): f is {field?: unknown; message?: unknown} => !!f && typeof f === 'object')
          .map((f: {field?: unknown; message?: unknown}) => ({
            field: typeof f.field === 'string' ? f.field : '',
            message: typeof f.message === 'string' ? f.message : 'invalid',
          }));
      }
    }
  } catch {
    /* not JSON: keep the status text */
  }
  if (status === 401) message = STATUS_TEXT[401];
  const ra = retryAfterHeader !== null ? Number.parseInt(retryAfterHeader, 10) : NaN;
  const retryAfter = Number.isFinite(ra) && ra >= 0 ? ra : null;
  if (status === 429 && retryAfter !== null) message = `Too many attempts. Try again in ${retryAfter} s.`;
  return new ApiError(status, code, message, fields, retryAfter);
}

/**
 * Field errors keyed by the form field they belong to: "targeting.dayparts[0].hours[2]" goes to
 * "targeting" (and is also kept under its full path); errors for "" (the body) or for fields
 * the form does not show go to "_form".
 */
export function fieldErrorMap(err: unknown, shown: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  if (!(err instanceof ApiError)) return out;
  const add = (k: string, m: string) => {
    out[k] = out[k] ? out[k] + '; ' + m : m;
  };
  for (const f of err.fields) {
    const top = f.field.split(/[.[]/)[0];
    if (f.field && (shown.length === 0 || shown.includes(top))) {
      add(top, f.message);
      if (top !== f.field) add(f.field, f.message);
    } else {
      add('_form', f.field ? `${f.field}: ${f.message}` : f.message);
    }
  }
  return out;
}

export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

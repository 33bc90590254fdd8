import {describe, expect, it} from 'vitest';
import {ApiError, fieldErrorMap, messageForStatus, toApiError} from '../src/api/errors';

describe('API error mapping', () => {
  it('keeps the code and field errors of a 422', () => {
    const e = toApiError(422, JSON.stringify({error: {code: 'validation_failed', message: 'request validation failed', fields: [
      {field: 'timezone', message: 'must be an IANA time zone'},
      {field: 'targeting.dayparts[0].hours[2]', message: 'out of range'},
      {field: '', message: 'body is odd'},
      {field: 'version', message: 'read-only'},
    ]}}));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(422);
    expect(e.code).toBe('validation_failed');
    expect(e.message).toBe('Please correct the highlighted fields.');
    const m = fieldErrorMap(e, ['timezone', 'targeting']);
    expect(m.timezone).toBe('must be an IANA time zone');
    expect(m.targeting).toBe('out of range');
    expect(m['targeting.dayparts[0].hours[2]']).toBe('out of range');
    expect(m._form).toBe('body is odd; version: read-only');
  });

  it('joins several messages for one field', () => {
    const e = toApiError(422, JSON.stringify({error: {code: 'v', message: 'm', fields: [{field: 'name', message: 'a'}, {field: 'name', message: 'b'}]}}));
    expect(fieldErrorMap(e).name).toBe('a; b');
  });

  it('uses the server message for other errors, a status text for non-JSON bodies', () => {
    expect(toApiError(409, '{"error":{"code":"conflict","message":"bidder_code is taken","fields":[]}}').message).toBe('bidder_code is taken');
    const e = toApiError(502, '<html>bad gateway</html>');
    expect(e.code).toBe('http_502');
    expect(e.message).toBe(messageForStatus(502));
    expect(e.fields).toEqual([]);
  });

  it('says to sign in again on 401 and when to retry on 429', () => {
    expect(toApiError(401, '{"error":{"code":"unauthorized","message":"no token"}}').message).toMatch(/sign in again/);
    const e = toApiError(429, '{"error":{"code":"too_many_attempts","message":"x"}}', '120');
    expect(e.retryAfter).toBe(120);
    expect(e.message).toBe('Too many attempts. Try again in 120 s.');
    expect(toApiError(429, '', 'soon').retryAfter).toBeNull();
  });

  it('tolerates malformed field lists', () => {
    const e = toApiError(422, JSON.stringify({error: {code: 'v', message: 'm', fields: [null, 3, {field: 7}, {message: 'x'}]}}));
    expect(e.fields).toEqual([{field: '', message: 'invalid'}, {field: '', message: 'x'}]);
    expect(fieldErrorMap(new Error('plain'))).toEqual({});
  });
});

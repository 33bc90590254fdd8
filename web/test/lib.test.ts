import {describe, expect, it} from 'vitest';
import {parseMoney, microsToInput, localInputToIso} from '../src/lib/format';
import {buckets, diffBuckets, overviewFrom, parseProm, partnerTarget, quantileFromBuckets, rate, sum} from '../src/lib/prom';
import {toValue, validateField, SPECS, toText, refQuery} from '../src/lib/fields';
import {visibleRange} from '../src/components/VirtualTable';
import {searchCountries} from '../src/lib/countries';

describe('money', () => {
  it('parses decimal amounts into exact micros', () => {
    expect(parseMoney('12.345678')).toBe(12345678);
    expect(parseMoney('0.1')).toBe(100000);
    expect(parseMoney('1,000')).toBe(1000000000);
    expect(parseMoney('')).toBeNull();
    expect(parseMoney('1.2345678')).toBeNaN();
    expect(parseMoney('-1')).toBeNaN();
    expect(microsToInput(2500000)).toBe('2.5');
    expect(microsToInput(100000000)).toBe('100');
  });
  it('converts datetime-local values to UTC ISO', () => {
    expect(localInputToIso('')).toBeNull();
    expect(localInputToIso('2026-03-01T10:00')).toMatch(/^2026-03-0[12]T\d\d:00:00Z$/);
  });
});

describe('Prometheus text', () => {
  const text = `# HELP x
adplatform_http_requests_total{server="data",route="/v1/decision",status="200",worker="0"} 30
adplatform_http_requests_total{server="data",route="/v1/decision",status="204",worker="1"} 10
adplatform_http_requests_total{server="admin",route="/metrics",status="200",worker="0"} 5
adplatform_http_requests_total{server="data",route="/v1/e/imp",status="200",worker="0"} 25
adplatform_http_request_duration_seconds_bucket{server="data",worker="0",le="0.001"} 90
adplatform_http_request_duration_seconds_bucket{server="data",worker="0",le="0.01"} 99
adplatform_http_request_duration_seconds_bucket{server="data",worker="0",le="+Inf"} 100
ap_events_accepted_total{type="imp"} 21
ap_events_accepted_total{type="click"} 2
ap_rtb_auctions_total 7
ap_rtb_bids_total{partner="adplatform"} 4
ap_rtb_partner_bids_total 3
ap_rtb_wins_total{partner="adplatform"} 2
ap_rtb_partner_wins_total 1
weird{a="q\\"uote"} 1e3`;
  it('parses samples with labels and escapes', () => {
    const s = parseProm(text);
    expect(s).toHaveLength(15);
    expect(s[14]).toEqual({name: 'weird', labels: {a: 'q"uote'}, value: 1000});
    expect(sum(s, 'adplatform_http_requests_total', (l) => l.server === 'data')).toBe(65);
    expect(sum(s, 'nope')).toBeNull();
  });
  it('derives the overview figures', () => {
    const o = overviewFrom(parseProm(text), 0);
    expect(o.requests).toBe(65);
    expect(o.decisions).toBe(40);
    expect(o.filled).toBe(30);
    expect(o.impressions).toBe(21); // ap_events_accepted_total, not the beacon route's requests
    expect(o.clicks).toBe(2);
    expect(o.rtbRequests).toBe(7);
    expect(o.rtbBids).toBe(7);
    expect(o.rtbWins).toBe(3);
    expect(overviewFrom(parseProm('x 1'), 0).rtbBids).toBeNull();
    expect(partnerTarget(5)).toBe('5');
    expect(partnerTarget(1024)).toBe('1');
  });
  it('computes quantiles and rates', () => {
    const b = buckets(parseProm(text), 'adplatform_http_request_duration_seconds_bucket');
    expect(quantileFromBuckets(b, 0.5)).toBeCloseTo(0.001 * (50 / 90));
    expect(quantileFromBuckets(b, 0.99)).toBeCloseTo(0.01);
    expect(quantileFromBuckets(new Map(), 0.99)).toBeNull();
    const prev = new Map([[0.001, 80], [0.01, 89], [Infinity, 90]]);
    expect([...diffBuckets(b, prev).values()]).toEqual([10, 10, 10]);
    expect(rate(130, 100, 3)).toBe(10);
    expect(rate(5, 100, 3)).toBe(0); // counter reset
    expect(rate(null, 1, 1)).toBeNull();
  });
});

describe('form fields', () => {
  const f = (name: string, res = 'campaigns') => (SPECS[res] ?? SPECS.advertisers).find((x) => x.name === name)!;
  it('validates inline like the API', () => {
    expect(validateField(f('name', 'advertisers'), '')).toBe('Name is required');
    expect(validateField(f('currency', 'advertisers'), 'usd')).toBe('An ISO 4217 code like USD');
    expect(validateField(f('currency', 'advertisers'), 'EUR')).toBeUndefined();
    expect(validateField(f('endpoint', 'demand-partners'), 'ftp://x')).toBe('An http(s) URL');
    expect(validateField(f('timeout_ms', 'demand-partners'), '0')).toBe('At least 1');
    expect(validateField(f('timeout_ms', 'demand-partners'), '1.5')).toBe('A whole number');
    expect(validateField(f('credit_limit_micros', 'advertisers'), '1.5')).toBeUndefined();
  });
  it('converts between form text and API values', () => {
    expect(toValue(f('credit_limit_micros', 'advertisers'), '')).toBeNull();
    expect(toValue(f('credit_limit_micros', 'advertisers'), '12.5')).toBe(12500000);
    expect(toValue(f('sizes', 'placements'), '300x250, 728x90')).toEqual(['300x250', '728x90']);
    expect(toValue(f('advertiser_ids', 'users'), '1, 2')).toEqual([1, 2]);
    expect(toText(f('floor_cpm_micros', 'placements'), 1500000)).toBe('1.5');
    expect(toText(f('sizes', 'placements'), ['1x1', '2x2'])).toBe('1x1, 2x2');
  });
});

describe('virtual list window', () => {
  it('draws only the rows in view plus a margin', () => {
    expect(visibleRange(0, 440, 10000)).toEqual({first: 0, last: 18});
    expect(visibleRange(44 * 5000, 440, 10000)).toEqual({first: 4992, last: 5018});
    expect(visibleRange(44 * 9999, 440, 10000).last).toBe(10000);
  });
});

describe('country picker', () => {
  it('finds countries by code and by name', () => {
    expect(searchCountries('de')[0]).toBe('DE');
    expect(searchCountries('germ')).toContain('DE');
    expect(searchCountries('').length).toBeGreaterThan(240);
  });
});

describe('ref choices', () => {
  const creative = SPECS.ads.find((f) => f.name === 'creative_id')!;
  it('an ad offers the creatives of its campaign\'s advertiser', () => {
    expect(refQuery(creative, {campaign_id: ''}, undefined)).toBeUndefined();
    expect(refQuery(creative, {campaign_id: '7'}, undefined)).toBeUndefined(); // campaign loading
    expect(refQuery(creative, {campaign_id: '7'}, {id: 7, advertiser_id: 3})).toEqual({advertiser_id: '3'});
  });
  it('a plain refFilter uses the form\'s own field', () => {
    const f = {name: 'x', label: 'X', type: 'ref' as const, ref: 'creatives' as const, refFilter: 'advertiser_id'};
    expect(refQuery(f, {advertiser_id: '5'})).toEqual({advertiser_id: '5'});
    expect(refQuery(f, {advertiser_id: ''})).toBeUndefined();
  });
});

import {describe, expect, it} from 'vitest';
import {ctrOf, nextSort, reportColumns, sortRows, toCsv} from '../src/lib/report';

const rows = [
  {campaign_id: 2, impressions: 100, clicks: 3, spend_micros: 450000},
  {campaign_id: 10, impressions: 2000, clicks: 1, spend_micros: null},
  {campaign_id: 1, impressions: 50, clicks: 5, spend_micros: 90000},
];

describe('report table', () => {
  it('sorts numbers numerically, both ways, empty values last', () => {
    expect(sortRows(rows, 'campaign_id', 'asc').map((r) => r.campaign_id)).toEqual([1, 2, 10]);
    expect(sortRows(rows, 'impressions', 'desc').map((r) => r.impressions)).toEqual([2000, 100, 50]);
    expect(sortRows(rows, 'spend_micros', 'asc').map((r) => r.campaign_id)).toEqual([1, 2, 10]);
    expect(sortRows(rows, 'spend_micros', 'desc').map((r) => r.campaign_id)).toEqual([2, 1, 10]);
  });

  it('sorts text naturally and keeps ties stable', () => {
    const r = [{c: 'b', n: 1}, {c: 'a10', n: 2}, {c: 'a9', n: 3}, {c: 'b', n: 4}];
    expect(sortRows(r, 'c', 'asc').map((x) => x.n)).toEqual([3, 2, 1, 4]);
    expect(sortRows(r, 'c', 'desc').map((x) => x.n)).toEqual([1, 4, 2, 3]);
  });

  it('does not change the input', () => {
    const copy = JSON.parse(JSON.stringify(rows));
    sortRows(rows, 'clicks', 'desc');
    expect(rows).toEqual(copy);
  });

  it('toggles direction on the same column; metrics start descending', () => {
    expect(nextSort(null, 'impressions')).toEqual({key: 'impressions', dir: 'desc'});
    expect(nextSort(null, 'campaign')).toEqual({key: 'campaign', dir: 'asc'});
    expect(nextSort({key: 'campaign', dir: 'asc'}, 'campaign')).toEqual({key: 'campaign', dir: 'desc'});
  });

  it('orders columns: time, dimensions, metrics, then anything else', () => {
    const r = [{clicks: 1, day: '2026-01-01', extra: 5, impressions: 2, campaign_id: 3, country: 'US'}];
    expect(reportColumns(r, ['country', 'campaign'])).toEqual(['day', 'country', 'campaign_id', 'impressions', 'clicks', 'extra']);
  });

  it('computes CTR when the API does not give it', () => {
    expect(ctrOf({impressions: 200, clicks: 3})).toBeCloseTo(0.015);
    expect(ctrOf({impressions: 0, clicks: 0})).toBeNull();
    expect(ctrOf({impressions: 10, clicks: 1, ctr: 0.5})).toBe(0.5);
  });

  it('writes RFC 4180 CSV with quoting and formula protection', () => {
    const csv = toCsv(['name', 'impressions', 'note'], [
      {name: 'Spring, "Sale"', impressions: 12, note: '=HYPERLINK("x")'},
      {name: 'Plain', impressions: 0, note: null},
      {name: 'multi\nline', impressions: -1, note: '@cmd'},
    ]);
    expect(csv).toBe(
      'name,impressions,note\r\n' +
      '"Spring, ""Sale""",12,"\'=HYPERLINK(""x"")"\r\n' +
      'Plain,0,\r\n' +
      '"multi\nline",-1,\'@cmd\r\n',
    );
  });
});

import {describe, expect, it} from 'vitest';
import {daypartsToGrid, emptyGrid, fromTargeting, gridToDayparts, paintRect, parseList, toTargeting, toggleDay, toggleHour, validateTargeting} from '../src/lib/targeting';

describe('targeting editor state', () => {
  it('round-trips a targeting object and keeps keys it does not edit', () => {
    const t = {
      countries_include: ['US', 'CA'],
      device_types: ['desktop'],
      dayparts: [{days: [1, 2, 3, 4, 5], hours: [9, 10, 11]}],
      keywords: {any: ['news'], none: ['crypto']},
      sites_exclude: [7],
      languages: ['en'],
      regions_include: ['US-CA'],
    };
    const s = fromTargeting(t);
    expect(s.countries_include).toEqual(['US', 'CA']);
    expect(s.rest).toEqual({languages: ['en'], regions_include: ['US-CA']});
    expect(toTargeting(s)).toEqual(t);
  });

  it('leaves out empty lists and the all-hours grid (no restriction)', () => {
    const s = fromTargeting({});
    expect(s.grid.every((r) => r.every(Boolean))).toBe(true);
    expect(toTargeting(s)).toEqual({});
    expect(toTargeting({...s, keywords_all: ['a']})).toEqual({keywords: {all: ['a']}});
  });

  it('groups days with the same hours into one daypart', () => {
    let g = emptyGrid(false);
    g = paintRect(g, [1, 8], [5, 17], true); // Mon-Fri 8-17
    g = paintRect(g, [6, 10], [6, 11], true); // Sat 10-11
    expect(gridToDayparts(g)).toEqual([
      {days: [1, 2, 3, 4, 5], hours: [8, 9, 10, 11, 12, 13, 14, 15, 16, 17]},
      {days: [6], hours: [10, 11]},
    ]);
    expect(daypartsToGrid(gridToDayparts(g))).toEqual(g);
  });

  it('toggles a whole day or hour on, then off', () => {
    let g = emptyGrid(false);
    g = toggleDay(g, 0);
    expect(g[0].every(Boolean)).toBe(true);
    g = toggleDay(g, 0);
    expect(g[0].some(Boolean)).toBe(false);
    g = toggleHour(g, 23);
    expect(g.every((r) => r[23])).toBe(true);
    expect(g.every((r) => !r[22])).toBe(true);
  });

  it('ignores malformed dayparts', () => {
    const g = daypartsToGrid([{days: [9, -1, 'x'], hours: [25]}, null, {days: [0], hours: [0]}]);
    expect(gridToDayparts(g)).toEqual([{days: [0], hours: [0]}]);
  });

  it('parses keyword lists: trimmed, lower case, no duplicates', () => {
    expect(parseList(' News, sports\nNEWS,, parks ')).toEqual(['news', 'sports', 'parks']);
  });

  it('flags contradictions and an empty grid', () => {
    const s = fromTargeting({countries_include: ['DE'], countries_exclude: ['DE'], sites_include: [1], sites_exclude: [1], keywords: {all: ['a'], none: ['a']}});
    const e = validateTargeting({...s, grid: emptyGrid(false)});
    expect(Object.keys(e).sort()).toEqual(['targeting.countries_exclude', 'targeting.dayparts', 'targeting.keywords', 'targeting.sites_exclude']);
    expect(validateTargeting(fromTargeting({countries_include: ['US']}))).toEqual({});
  });
});

// Reports: date range, time zone, granularity and group-by; a uPlot chart and a sortable table;
// CSV download (the API's text/csv when it answers one, else built from the rows shown).
import {createMemo, createSignal, For, Show, Switch, Match, lazy} from 'solid-js';
import {createQuery} from '@tanstack/solid-query';
import {report, reportCsv, type ReportQuery, type ReportRow} from '../api/client';
import {ApiError, errorMessage} from '../api/errors';
import {columnLabel, ctrOf, nextSort, reportColumns, sortRows, toCsv, type SortDir} from '../lib/report';
import {formatInt, formatMicros, formatPct, ymd} from '../lib/format';
import {Loading, Empty, Field, Tiles} from '../components/ui';

const LineChart = lazy(() => import('../components/Chart').then((m) => ({default: m.LineChart})));
const DIMENSIONS = ['campaign', 'ad', 'placement', 'site', 'country', 'device'] as const;
const ZONES = ['UTC', 'America/New_York', 'America/Chicago', 'America/Los_Angeles', 'Europe/London', 'Europe/Berlin', 'Asia/Tokyo', 'Australia/Sydney'];

export function formatCell(col: string, v: unknown, row: ReportRow): string {
  if (col === 'ctr') return formatPct(ctrOf(row));
  if (col.endsWith('_micros')) return formatMicros(v as number | null);
  if (typeof v === 'number') return formatInt(v);
  return v === null || v === undefined ? '—' : String(v);
}

export default function Reports() {
  const now = new Date();
  const weekAgo = new Date(now.getTime() - 6 * 86400e3);
  const localTz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const [from, setFrom] = createSignal(ymd(weekAgo));
  const [to, setTo] = createSignal(ymd(now));
  const [tz, setTz] = createSignal(localTz);
  const [gran, setGran] = createSignal<'hour' | 'day' | 'total'>('day');
  const [groupBy, setGroupBy] = createSignal<string[]>(['campaign']);
  const [sort, setSort] = createSignal<{key: string; dir: SortDir} | null>(null);
  const [csvErr, setCsvErr] = createSignal<string>();
  const rangeErr = () => (from() > to() ? 'The start is after the end' : undefined);
  const query = (): ReportQuery => ({from: from(), to: to(), timezone: tz(), granularity: gran(), group_by: groupBy().join(',') || undefined});
  const rep = createQuery(() => ({queryKey: ['reports', query()], queryFn: () => report(query()), enabled: !rangeErr(), retry: false}));
  const rows = createMemo(() => rep.data?.rows ?? []);
  const cols = createMemo(() => reportColumns(rows(), groupBy()));
  const sorted = createMemo(() => (sort() ? sortRows(rows() as Record<string, unknown>[], sort()!.key, sort()!.dir) : rows()) as ReportRow[]);
  const series = createMemo(() => {
    const timeKey = gran() === 'hour' ? 'hour' : gran() === 'day' ? 'day' : null;
    if (!timeKey) return null;
    const by = new Map<number, {imp: number; clk: number}>();
    for (const r of rows()) {
      const t = Date.parse(String(r[timeKey] ?? ''));
      if (!Number.isFinite(t)) continue;
      const e = by.get(t / 1000) ?? {imp: 0, clk: 0};
      e.imp += Number(r.impressions ?? 0);
      e.clk += Number(r.clicks ?? 0);
      by.set(t / 1000, e);
    }
    const xs = [...by.keys()].sort((a, b) => a - b);
    return xs.length > 0 ? {x: xs, imp: xs.map((x) => by.get(x)!.imp), clk: xs.map((x) => by.get(x)!.clk)} : null;
  });
  const download = async () => {
    setCsvErr(undefined);
    let text: string;
    try {
      text = await reportCsv(query());
    } catch (e) {
      if (!(e instanceof ApiError) || rows().length === 0) {
        setCsvErr(errorMessage(e));
        return;
      }
      text = toCsv(cols(), sorted() as Record<string, unknown>[]);
    }
    const url = URL.createObjectURL(new Blob([text], {type: 'text/csv'}));
    const a = document.createElement('a');
    a.href = url;
    a.download = `report-${from()}-${to()}.csv`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  const totals = () => {
    const t = rep.data?.totals ?? {};
    return [
      {label: 'Impressions', value: formatInt(t.impressions as number)},
      {label: 'Clicks', value: formatInt(t.clicks as number)},
      {label: 'CTR', value: formatPct(ctrOf(t))},
      {label: 'Spend', value: formatMicros((t.spend_micros as number) ?? null)},
      {label: 'Revenue', value: formatMicros((t.revenue_micros as number) ?? null)},
    ];
  };
  return (
    <section>
      <header class="page-head">
        <h1>Reports</h1>
        <button type="button" class="btn" onClick={download} disabled={!rep.data}>Download CSV</button>
      </header>
      <Show when={csvErr()}><div class="form-error" role="alert">{csvErr()}</div></Show>
      <form class="card filters" onSubmit={(e) => e.preventDefault()} aria-label="Report options">
        <Field label="From" error={rangeErr()}>{(id, d) => <input id={id} type="date" value={from()} onChange={(e) => setFrom(e.currentTarget.value)} aria-describedby={d} />}</Field>
        <Field label="To">{(id) => <input id={id} type="date" value={to()} onChange={(e) => setTo(e.currentTarget.value)} />}</Field>
        <Field label="Time zone">
          {(id) => (
            <select id={id} value={tz()} onChange={(e) => setTz(e.currentTarget.value)}>
              <For each={[...new Set([localTz, ...ZONES])]}>{(z) => <option value={z} selected={z === tz()}>{z}</option>}</For>
            </select>
          )}
        </Field>
        <Field label="Granularity">
          {(id) => (
            <select id={id} value={gran()} onChange={(e) => setGran(e.currentTarget.value as 'hour' | 'day' | 'total')}>
              <option value="hour">hour</option>
              <option value="day" selected>day</option>
              <option value="total">total</option>
            </select>
          )}
        </Field>
        <fieldset class="checks">
          <legend>Group by</legend>
          <For each={DIMENSIONS}>
            {(d) => (
              <label>
                <input type="checkbox" checked={groupBy().includes(d)} onChange={() => setGroupBy(groupBy().includes(d) ? groupBy().filter((x) => x !== d) : [...groupBy(), d])} /> {d}
              </label>
            )}
          </For>
        </fieldset>
      </form>
      <Switch>
        <Match when={rangeErr()}><Empty>Pick a start date on or before the end date.</Empty></Match>
        <Match when={rep.isPending}><Loading /></Match>
        <Match when={rep.isError}>
          <div class="state error" role="alert">
            {rep.error instanceof ApiError && rep.error.status === 404 ? 'Reports are not available on this server yet (no /api/v1/reports).' : errorMessage(rep.error)}
          </div>
        </Match>
        <Match when={rows().length === 0}>
          <Tiles items={totals()} />
          <Empty>No traffic in this period.</Empty>
        </Match>
        <Match when={true}>
          <Tiles items={totals()} />
          <Show when={series()}>
            <div class="card">
              <LineChart x={series()!.x} series={[{label: 'impressions', values: series()!.imp, color: '#1d4ed8'}, {label: 'clicks', values: series()!.clk, color: '#15803d'}]} label="Impressions and clicks over time" />
            </div>
          </Show>
          <div class="table-wrap">
            <table class="report-table">
              <caption class="sr-only">Report rows; select a column header to sort</caption>
              <thead>
                <tr>
                  <For each={cols()}>
                    {(c) => (
                      <th scope="col" aria-sort={sort()?.key === c ? (sort()!.dir === 'asc' ? 'ascending' : 'descending') : 'none'}>
                        <button type="button" class="sort" onClick={() => setSort(nextSort(sort(), c))}>
                          {columnLabel(c)} {sort()?.key === c ? (sort()!.dir === 'asc' ? '▲' : '▼') : ''}
                        </button>
                      </th>
                    )}
                  </For>
                </tr>
              </thead>
              <tbody>
                <For each={sorted().slice(0, 2000)}>
                  {(r) => <tr><For each={cols()}>{(c) => <td class={typeof r[c] === 'number' ? 'num' : ''}>{formatCell(c, r[c], r)}</td>}</For></tr>}
                </For>
              </tbody>
            </table>
            <Show when={sorted().length > 2000}><p class="muted">First 2,000 of {sorted().length.toLocaleString()} rows shown; the CSV has them all.</p></Show>
          </div>
        </Match>
      </Switch>
    </section>
  );
}

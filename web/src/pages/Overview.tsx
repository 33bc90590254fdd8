// Overview: live tiles refreshed every 3 s from /metrics (platform-wide: admins and viewers) and
// today's report (every role, scoped to the caller by the API), with a requests/s chart.
import {createMemo, createSignal, onCleanup, Show, lazy} from 'solid-js';
import {createQuery} from '@tanstack/solid-query';
import {metricsText, report, listAll} from '../api/client';
import {overviewFrom, parseProm, quantileFromBuckets, diffBuckets, rate, ratio, type Overview as Ov} from '../lib/prom';
import {formatInt, formatMicros, formatPct, ymd} from '../lib/format';
import {Tiles, ErrorBox, PacingBar} from '../components/ui';
import {role} from '../auth';
import {ApiError} from '../api/errors';

const LineChart = lazy(() => import('../components/Chart').then((m) => ({default: m.LineChart})));
const REFRESH_MS = 3000;
const HISTORY = 100;

export default function Overview() {
  const platform = () => role() === 'admin' || role() === 'viewer';
  const [prev, setPrev] = createSignal<Ov | null>(null);
  const [cur, setCur] = createSignal<Ov | null>(null);
  const [hist, setHist] = createSignal<{t: number[]; rps: (number | null)[]; p99: (number | null)[]}>({t: [], rps: [], p99: []});
  const [metricsErr, setMetricsErr] = createSignal<unknown>(null);
  const scrape = async () => {
    if (!platform()) return;
    try {
      const o = overviewFrom(parseProm(await metricsText()), Date.now());
      const p = cur();
      setPrev(p);
      setCur(o);
      setMetricsErr(null);
      if (p) {
        const secs = (o.at - p.at) / 1000;
        const q = quantileFromBuckets(diffBuckets(o.latency, p.latency), 0.99);
        const h = hist();
        setHist({
          t: [...h.t, o.at / 1000].slice(-HISTORY),
          rps: [...h.rps, rate(o.requests, p.requests, secs)].slice(-HISTORY),
          p99: [...h.p99, q === null ? null : q * 1000].slice(-HISTORY),
        });
      }
    } catch (e) {
      setMetricsErr(e);
    }
  };
  scrape();
  const timer = setInterval(scrape, REFRESH_MS);
  onCleanup(() => clearInterval(timer));

  const today = ymd(new Date());
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const rep = createQuery(() => ({
    queryKey: ['reports', 'today', today],
    queryFn: () => report({from: today, to: today, timezone: tz, granularity: 'total'}),
    refetchInterval: REFRESH_MS * 2,
    retry: false,
  }));
  const campaigns = createQuery(() => ({
    queryKey: ['campaigns', 'active-budgets'],
    queryFn: () => listAll('campaigns', {status: 'active'}),
    enabled: role() !== 'publisher',
    staleTime: 30_000,
  }));
  const dailyBudget = createMemo(() => {
    const c = campaigns.data;
    if (!c) return null;
    const b = c.reduce((s, x) => s + (x.budget_daily_micros ?? 0), 0);
    return b > 0 ? b : null;
  });
  const secs = () => (cur() && prev() ? (cur()!.at - prev()!.at) / 1000 : 0);
  const live = () => {
    const c = cur(), p = prev();
    const r = (k: keyof Ov) => rate((c?.[k] as number | null) ?? null, (p?.[k] as number | null) ?? null, secs());
    const lat = c && p ? quantileFromBuckets(diffBuckets(c.latency, p.latency), 0.99) : null;
    const fill = c && p ? ratio(rate(c.filled, p.filled, 1), rate(c.decisions, p.decisions, 1)) : null;
    return [
      {label: 'Requests/s', value: r('requests') === null ? '—' : r('requests')!.toFixed(1), sub: 'data plane'},
      {label: 'Decisions/s', value: r('decisions') === null ? '—' : r('decisions')!.toFixed(1)},
      {label: 'Fill rate', value: formatPct(fill, 1), sub: 'last interval'},
      {label: 'p99 latency', value: lat === null ? '—' : (lat * 1000).toFixed(2) + ' ms', sub: 'data plane, last interval'},
      {label: 'Impressions (since start)', value: formatInt(c?.impressions ?? null)},
      {label: 'Clicks (since start)', value: formatInt(c?.clicks ?? null)},
      {label: 'RTB requests', value: formatInt(c?.rtbRequests ?? null)},
      {label: 'RTB bids / win rate', value: c?.rtbBids === null || c?.rtbBids === undefined ? '—' : `${formatInt(c.rtbBids)} / ${formatPct(ratio(c.rtbWins, c.rtbBids), 1)}`},
    ];
  };
  const todayTiles = () => {
    const t = rep.data?.totals ?? {};
    const imps = Number(t.impressions ?? 0), clicks = Number(t.clicks ?? 0);
    return [
      {label: 'Impressions today', value: formatInt(imps)},
      {label: 'Clicks today', value: formatInt(clicks)},
      {label: 'CTR today', value: formatPct(typeof t.ctr === 'number' ? t.ctr : imps ? clicks / imps : null)},
      role() === 'publisher'
        ? {label: 'Revenue today', value: formatMicros((t.revenue_micros as number) ?? null)}
        : {label: 'Spend today', value: formatMicros((t.spend_micros as number) ?? null), sub: dailyBudget() ? 'of ' + formatMicros(dailyBudget()) + ' daily budget' : undefined},
    ];
  };
  const dayFraction = () => {
    const d = new Date();
    return (d.getHours() * 3600 + d.getMinutes() * 60 + d.getSeconds()) / 86400;
  };
  return (
    <section>
      <header class="page-head">
        <h1>Overview</h1>
        <span class="muted small" aria-live="polite">
          refreshes every {REFRESH_MS / 1000} s
        </span>
      </header>
      <h2>Today</h2>
      <Show
        when={!rep.isError}
        fallback={
          <p class="state">
            {rep.error instanceof ApiError && rep.error.status === 404 ? 'Reports are not available on this server yet.' : 'Cannot load today’s report: ' + (rep.error as Error)?.message}
          </p>
        }
      >
        <Tiles items={todayTiles()} />
        <Show when={role() !== 'publisher' && dailyBudget()}>
          <div class="card">
            <h3>Spend today against daily budgets</h3>
            <PacingBar spent={(rep.data?.totals.spend_micros as number) ?? 0} budget={dailyBudget()} expected={dayFraction()} label="Spend today against the daily budgets of active campaigns" />
          </div>
        </Show>
      </Show>
      <Show when={platform()}>
        <h2>Live</h2>
        <Show when={metricsErr()}>
          <ErrorBox error={metricsErr()} />
        </Show>
        <Tiles items={live()} />
        <div class="card">
          <h3>Requests per second and p99 latency (ms)</h3>
          <Show when={hist().t.length > 1} fallback={<p class="muted">Collecting samples…</p>}>
            <LineChart
              x={hist().t}
              series={[
                {label: 'requests/s', values: hist().rps, color: '#1d4ed8'},
                {label: 'p99 ms', values: hist().p99, color: '#b45309'},
              ]}
              label="Requests per second and p99 latency over the last minutes"
            />
          </Show>
        </div>
      </Show>
    </section>
  );
}

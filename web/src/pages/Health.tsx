// System health from /metrics every 5 s: liveness, version (adplatform_build_info), uptime
// (adplatform_start_time_seconds), threads per plane (adplatform_threads), open connections, the
// event log (ap_evlog_*) and the aggregator's lag (ap_agg_lag_*).
import {createSignal, onCleanup, For, Show} from 'solid-js';
import {healthz, metricsText} from '../api/client';
import {parseProm, sum, type Sample} from '../lib/prom';
import {Tiles, ErrorBox} from '../components/ui';
import {errorMessage} from '../api/errors';

export function threadsOf(samples: Sample[], server: string): number | null {
  const n = sum(samples, 'adplatform_threads', (l) => l.server === server);
  if (n !== null) return n;
  const ws = new Set(samples.filter((s) => s.labels.server === server && s.labels.worker !== undefined).map((s) => s.labels.worker));
  return ws.size || null;
}

function duration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '—';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${Math.floor(s % 60)}s`;
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

export default function Health() {
  const [samples, setSamples] = createSignal<Sample[]>([]);
  const [live, setLive] = createSignal<{ok: boolean; text: string} | null>(null);
  const [err, setErr] = createSignal<string>();
  const load = async () => {
    setLive(await healthz());
    try {
      setSamples(parseProm(await metricsText()));
      setErr(undefined);
    } catch (e) {
      setErr(errorMessage(e));
    }
  };
  load();
  const t = setInterval(load, 5000);
  onCleanup(() => clearInterval(t));
  const info = () => samples().find((s) => s.name === 'adplatform_build_info');
  const start = () => sum(samples(), 'adplatform_start_time_seconds');
  const uptime = () => (start() !== null ? Math.max(0, Date.now() / 1000 - start()!) : null);
  const lag = () => sum(samples(), 'ap_agg_lag_seconds');
  const lagRecords = () => sum(samples(), 'ap_agg_lag_records');
  const evlog = () => sum(samples(), 'ap_evlog_end_bytes');
  const syncMax = () => sum(samples(), 'ap_evlog_sync_seconds_max');
  const failed = () => sum(samples(), 'ap_evlog_failed');
  const tiles = () => [
    {label: 'Status', value: live() ? (live()!.ok ? 'healthy' : 'unhealthy') : '…', sub: live()?.text},
    {label: 'Version', value: info()?.labels.version ?? '—'},
    {label: 'Uptime', value: duration(uptime())},
    {label: 'Data-plane threads', value: String(threadsOf(samples(), 'data') ?? '—')},
    {label: 'Control-plane threads', value: String(threadsOf(samples(), 'admin') ?? '—')},
    {label: 'Open connections', value: String(sum(samples(), 'adplatform_http_open_connections') ?? '—')},
    {label: 'Event log', value: evlog() === null ? 'not reported' : failed() ? 'FAILED' : bytes(evlog()!),
      sub: syncMax() !== null ? `slowest fdatasync ${(syncMax()! * 1000).toFixed(1)} ms` : undefined},
    {label: 'Aggregator lag', value: lag() === null ? 'not reported' : lag()!.toFixed(2) + ' s',
      sub: lagRecords() !== null ? `${lagRecords()} records waiting` : undefined},
  ];
  const other = () => [...new Set(samples().map((s) => s.name))].filter((n) => !n.startsWith('adplatform_http_') && !n.endsWith('_bucket')).sort();
  return (
    <section>
      <header class="page-head"><h1>System health</h1></header>
      <Show when={err()}><ErrorBox error={err()} retry={load} /></Show>
      <Tiles items={tiles()} />
      <Show when={other().length}>
        <div class="card">
          <h2>Other metrics</h2>
          <ul class="plain mono small"><For each={other()}>{(n) => <li>{n} = {sum(samples(), n)}</li>}</For></ul>
        </div>
      </Show>
    </section>
  );
}

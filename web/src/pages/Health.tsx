// System health: liveness, version and uptime (when exported), threads and connections per plane,
// event log and aggregator lag (when the events module exports them), from /metrics every 5 s.
import {createSignal, onCleanup, For, Show} from 'solid-js';
import {healthz, metricsText} from '../api/client';
import {parseProm, sum, type Sample} from '../lib/prom';
import {Tiles, ErrorBox} from '../components/ui';
import {errorMessage} from '../api/errors';

export function threadsOf(samples: Sample[], server: string): number | null {
  const ws = new Set(samples.filter((s) => s.labels.server === server && s.labels.worker !== undefined).map((s) => s.labels.worker));
  return ws.size || null;
}

function duration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '—';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${Math.floor(s % 60)}s`;
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
  const info = () => samples().find((s) => /_build_info$|^adplatform_info$/.test(s.name));
  const start = () => sum(samples(), /^(adplatform_)?process_start_time_seconds$/);
  const uptime = () => sum(samples(), /^adplatform_uptime_seconds$/) ?? (start() !== null ? Date.now() / 1000 - start()! : null);
  const lag = () => sum(samples(), /^adplatform_(aggregator|agg)_lag_seconds$/);
  const evlog = () => sum(samples(), /^adplatform_(evlog|event_log)_bytes(_total)?$/);
  const sync = () => sum(samples(), /^adplatform_(evlog|event_log)_sync_seconds_sum$/);
  const tiles = () => [
    {label: 'Status', value: live() ? (live()!.ok ? 'healthy' : 'unhealthy') : '…', sub: live()?.text},
    {label: 'Version', value: info()?.labels.version ?? '—'},
    {label: 'Uptime', value: duration(uptime())},
    {label: 'Data-plane threads', value: String(threadsOf(samples(), 'data') ?? '—')},
    {label: 'Control-plane threads', value: String(threadsOf(samples(), 'admin') ?? '—')},
    {label: 'Open connections', value: String(sum(samples(), 'adplatform_http_open_connections') ?? '—')},
    {label: 'Event log', value: evlog() === null ? 'not reported' : (evlog()! / 1048576).toFixed(1) + ' MiB', sub: sync() !== null ? `sync time total ${sync()!.toFixed(2)} s` : undefined},
    {label: 'Aggregator lag', value: lag() === null ? 'not reported' : lag()!.toFixed(2) + ' s'},
  ];
  const other = () => [...new Set(samples().map((s) => s.name))].filter((n) => !n.startsWith('adplatform_http_')).sort();
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

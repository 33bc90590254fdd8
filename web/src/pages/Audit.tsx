// The audit log (admin): every write, newest first, with a before/after diff.
import {createMemo, createSignal, For, Show, Switch, Match} from 'solid-js';
import {useInfiniteList} from '../components/ResourcePages';
import {VirtualTable} from '../components/VirtualTable';
import {Loading, ErrorBox, Empty, Badge} from '../components/ui';
import {formatDate} from '../lib/format';

type Row = Record<string, unknown>;

/** Keys whose value differs between before and after. Pure. */
export function changedKeys(before: unknown, after: unknown): string[] {
  const b = (before && typeof before === 'object' ? before : {}) as Row;
  const a = (after && typeof after === 'object' ? after : {}) as Row;
  const keys = new Set([...Object.keys(b), ...Object.keys(a)]);
  return [...keys].filter((k) => k !== 'version' && k !== 'updated_at' && JSON.stringify(b[k]) !== JSON.stringify(a[k])).sort();
}

export default function Audit() {
  const [resource, setResource] = createSignal('');
  const [open, setOpen] = createSignal<Row | null>(null);
  const q = useInfiniteList(() => 'audit-log', (): Record<string, string> => (resource() ? {resource: resource()} : {}));
  const rows = createMemo(() => q.data?.pages.flatMap((p) => p.data) ?? []);
  return (
    <section>
      <header class="page-head">
        <h1>Audit log</h1>
        <label class="inline">
          Resource{' '}
          <select value={resource()} onChange={(e) => setResource(e.currentTarget.value)}>
            <option value="">all</option>
            <For each={['advertiser', 'campaign', 'ad', 'creative', 'publisher', 'site', 'placement', 'demand_partner', 'user', 'api_key', 'session']}>{(r) => <option value={r}>{r}</option>}</For>
          </select>
        </label>
      </header>
      <Switch>
        <Match when={q.isPending}><Loading /></Match>
        <Match when={q.isError}><ErrorBox error={q.error} retry={() => q.refetch()} /></Match>
        <Match when={rows().length === 0}><Empty>No entries.</Empty></Match>
        <Match when={true}>
          <VirtualTable rows={rows()} label="Audit log" rowKey={(r) => Number(r.id)} loadingMore={q.isFetchingNextPage}
            onEnd={() => q.hasNextPage && !q.isFetchingNextPage && q.fetchNextPage()}
            columns={[
              {key: 'at', label: 'When', width: '12rem', render: (r) => formatDate(r.at as string)},
              {key: 'actor_user_id', label: 'User', width: '5rem', render: (r) => (r.actor_user_id ? '#' + r.actor_user_id : 'system')},
              {key: 'action', label: 'Action', width: '6rem', render: (r) => <Badge value={r.action as string} />},
              {key: 'resource', label: 'Object', render: (r) => `${r.resource} #${r.resource_id}`},
              {key: 'changes', label: 'Changed', width: 'minmax(10rem, 2fr)', render: (r) => (
                <button type="button" class="link" onClick={() => setOpen(r)}>{changedKeys(r.before, r.after).join(', ') || 'details'}</button>
              )},
            ]} />
          <Show when={open()}>
            <div class="card" role="region" aria-label="Audit entry details">
              <h2>{String(open()!.action)} {String(open()!.resource)} #{String(open()!.resource_id)}</h2>
              <div class="split">
                <div><h3>Before</h3><pre class="mono">{JSON.stringify(open()!.before, null, 2)}</pre></div>
                <div><h3>After</h3><pre class="mono">{JSON.stringify(open()!.after, null, 2)}</pre></div>
              </div>
              <button type="button" class="btn" onClick={() => setOpen(null)}>Close</button>
            </div>
          </Show>
        </Match>
      </Switch>
    </section>
  );
}

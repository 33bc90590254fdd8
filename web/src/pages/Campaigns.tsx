// Campaigns: status, today's spend with a pacing bar against the daily budget, budgets, and
// pause/resume from the list. Virtualised and cursor-paginated (10,000 rows scroll smoothly).
import {createMemo, createSignal} from 'solid-js';
import {A} from '@solidjs/router';
import {createQuery, useQueryClient} from '@tanstack/solid-query';
import {ListView, statusCol, nameCol} from '../components/ResourcePages';
import {report, update, type Campaign} from '../api/client';
import {errorMessage} from '../api/errors';
import {canWrite} from '../auth';
import {formatMicros, ymd} from '../lib/format';
import {PacingBar} from '../components/ui';

type Row = Record<string, unknown>;

export function campaignIdOf(r: Record<string, unknown>): number | null {
  const v = r.campaign_id ?? r.campaign;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

export default function Campaigns() {
  const qc = useQueryClient();
  const [err, setErr] = createSignal<string>();
  const today = ymd(new Date());
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const spend = createQuery(() => ({
    queryKey: ['reports', 'campaign-spend', today],
    queryFn: () => report({from: today, to: today, timezone: tz, granularity: 'total', group_by: 'campaign'}),
    retry: false,
    refetchInterval: 15_000,
  }));
  const spendBy = createMemo(() => {
    const m = new Map<number, number>();
    for (const r of spend.data?.rows ?? []) {
      const id = campaignIdOf(r);
      if (id !== null) m.set(id, Number(r.spend_micros ?? 0));
    }
    return m;
  });
  const dayFraction = () => {
    const d = new Date();
    return (d.getHours() * 3600 + d.getMinutes() * 60) / 86400;
  };
  const toggle = async (r: Row) => {
    const next = r.status === 'active' ? 'paused' : 'active';
    setErr(undefined);
    try {
      await update('campaigns', Number(r.id), {status: next}, r.version as number);
      await qc.invalidateQueries({queryKey: ['campaigns']});
    } catch (e) {
      setErr(errorMessage(e));
    }
  };
  return (
    <>
      {err() && (
        <div class="form-error" role="alert">
          {err()}
        </div>
      )}
      <ListView
        resource="campaigns"
        title="Campaigns"
        base="/campaigns"
        canCreate={canWrite()}
        canArchive={canWrite()}
        statuses={['draft', 'active', 'paused', 'archived']}
        columns={[
          nameCol('/campaigns'),
          statusCol(),
          {key: 'advertiser_id', label: 'Advertiser', width: '6.5rem', render: (r) => <A href={`/advertisers/${r.advertiser_id}`}>#{String(r.advertiser_id)}</A>},
          {key: 'pricing', label: 'Price', width: '7rem', render: (r) => `${formatMicros(r.price_micros as number)} ${String(r.pricing_model ?? '').toUpperCase()}`},
          {key: 'spend', label: 'Spend today', width: '7rem', render: (r) => (spend.isError ? '—' : formatMicros(spendBy().get(Number(r.id)) ?? 0))},
          {key: 'pacing', label: 'Pacing (daily)', width: 'minmax(8rem, 1fr)', render: (r) => (
            (r as Campaign).budget_daily_micros
              ? <PacingBar spent={spendBy().get(Number(r.id)) ?? 0} budget={(r as Campaign).budget_daily_micros ?? null} expected={(r as Campaign).pacing === 'even' ? dayFraction() : null} label={`Spend today of the daily budget of ${String(r.name)}`} />
              : <span class="muted">no daily budget</span>
          )},
          {key: 'budget', label: 'Budget daily / total', width: 'minmax(9rem, 1fr)', render: (r) => `${formatMicros(r.budget_daily_micros as number | null)} / ${formatMicros(r.budget_lifetime_micros as number | null)}`},
          {key: 'toggle', label: 'Run', width: '6rem', render: (r) => (
            canWrite() && (r.status === 'active' || r.status === 'paused')
              ? <button type="button" class="btn small" onClick={() => toggle(r)} aria-label={`${r.status === 'active' ? 'Pause' : 'Resume'} ${String(r.name)}`}>{r.status === 'active' ? 'Pause' : 'Resume'}</button>
              : <span class="muted">—</span>
          )},
        ]}
      />
    </>
  );
}

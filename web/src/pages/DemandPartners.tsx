// Demand partners with their metrics: per partner the outbound client's adplatform_partner_*
// series (label partner = the client's target id, see partnerTarget), all partners together the
// exchange's ap_rtb_partner_* counters (bids and wins are not split per partner by the daemon).
import {Show, createSignal, onCleanup} from 'solid-js';
import {useParams} from '@solidjs/router';
import {ListView, EditView, nameCol, statusCol} from '../components/ResourcePages';
import {SPECS, STATUS3} from '../lib/fields';
import {canOperate} from '../auth';
import {metricsText} from '../api/client';
import {parseProm, partnerTarget, sum, type Sample} from '../lib/prom';
import {formatInt} from '../lib/format';

export default function DemandPartners() {
  const params = useParams();
  const [samples, setSamples] = createSignal<Sample[]>([]);
  const load = () => metricsText().then((t) => setSamples(parseProm(t)), () => setSamples([]));
  load();
  const timer = setInterval(load, 5000);
  onCleanup(() => clearInterval(timer));
  const m = (id: unknown, name: string) => sum(samples(), name, (l) => l.partner === partnerTarget(Number(id)));
  const all = (name: string) => formatInt(sum(samples(), name));
  return (
    <Show when={params.id} fallback={<>
      <ListView
        resource="demand-partners"
        title="Demand partners"
        base="/demand-partners"
        canCreate={canOperate()}
        canArchive={canOperate()}
        statuses={STATUS3}
        columns={[
          nameCol('/demand-partners'),
          statusCol(),
          {key: 'bidder_code', label: 'Bidder code'},
          {key: 'timeout_ms', label: 'Timeout', width: '6rem', render: (r) => `${r.timeout_ms} ms`},
          {key: 'req', label: 'Requests', width: '7rem', render: (r) => formatInt(m(r.id, 'adplatform_partner_requests_total'))},
          {key: 'ok', label: '2xx', width: '5rem', render: (r) => formatInt(sum(samples(), 'adplatform_partner_responses_total', (l) => l.partner === partnerTarget(Number(r.id)) && l.class === '2xx'))},
          {key: 'err', label: 'Errors/timeouts', width: '8rem', render: (r) => {
            const e = m(r.id, 'adplatform_partner_errors_total'), t = m(r.id, 'adplatform_partner_timeouts_total');
            return formatInt(e === null && t === null ? null : (e ?? 0) + (t ?? 0));
          }},
          {key: 'refused', label: 'Refused', width: '6rem', render: (r) => formatInt(m(r.id, 'adplatform_partner_refused_total'))},
          {key: 'breaker', label: 'Circuit', width: '6rem', render: (r) => {
            const b = m(r.id, 'adplatform_partner_breaker_state');
            return b === null ? '—' : ['closed', 'open', 'half-open'][b] ?? String(b);
          }},
        ]}
      />
      <div class="card small" data-testid="partner-totals">
        All partners: {all('ap_rtb_partner_calls_total')} calls, {all('ap_rtb_partner_bids_total')} bids,{' '}
        {all('ap_rtb_partner_wins_total')} wins, {all('ap_rtb_partner_timeouts_total')} timeouts
      </div>
    </>}>
      <EditView resource="demand-partners" what="Demand partner" fields={SPECS['demand-partners']} base="/demand-partners" readOnly={!canOperate()} />
    </Show>
  );
}

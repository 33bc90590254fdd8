// Demand partners with their metrics (per-partner RTB counters from /metrics when the RTB module
// exports them: series labelled partner/bidder).
import {Show, createSignal, onCleanup} from 'solid-js';
import {useParams} from '@solidjs/router';
import {ListView, EditView, nameCol, statusCol} from '../components/ResourcePages';
import {SPECS, STATUS3} from '../lib/fields';
import {canOperate} from '../auth';
import {metricsText} from '../api/client';
import {parseProm, sum, type Sample} from '../lib/prom';
import {formatInt, formatPct} from '../lib/format';

export default function DemandPartners() {
  const params = useParams();
  const [samples, setSamples] = createSignal<Sample[]>([]);
  const load = () => metricsText().then((t) => setSamples(parseProm(t)), () => setSamples([]));
  load();
  const timer = setInterval(load, 5000);
  onCleanup(() => clearInterval(timer));
  const m = (code: string, re: RegExp) => sum(samples(), re, (l) => (l.partner ?? l.bidder ?? l.bidder_code) === code);
  return (
    <Show when={params.id} fallback={
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
          {key: 'req', label: 'Requests', width: '7rem', render: (r) => formatInt(m(String(r.bidder_code), /^adplatform_rtb_.*requests_total$/))},
          {key: 'bids', label: 'Bids', width: '6rem', render: (r) => formatInt(m(String(r.bidder_code), /^adplatform_rtb_.*bids_total$/))},
          {key: 'win', label: 'Win rate', width: '6rem', render: (r) => {
            const b = m(String(r.bidder_code), /^adplatform_rtb_.*bids_total$/), w = m(String(r.bidder_code), /^adplatform_rtb_.*wins_total$/);
            return formatPct(b && w !== null ? w / b : null, 1);
          }},
          {key: 'err', label: 'Errors/timeouts', width: '8rem', render: (r) => formatInt(m(String(r.bidder_code), /^adplatform_rtb_.*(errors|timeouts)_total$/))},
        ]}
      />
    }>
      <EditView resource="demand-partners" what="Demand partner" fields={SPECS['demand-partners']} base="/demand-partners" readOnly={!canOperate()} />
    </Show>
  );
}

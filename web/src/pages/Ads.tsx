import {Show} from 'solid-js';
import {A, useParams, useSearchParams} from '@solidjs/router';
import {ListView, EditView, statusCol} from '../components/ResourcePages';
import {SPECS, STATUS3} from '../lib/fields';
import {canWrite} from '../auth';
import {summarize} from '../lib/targeting';

export default function Ads() {
  const params = useParams();
  const [sp] = useSearchParams();
  const filters = () => (typeof sp.campaign_id === 'string' ? {campaign_id: sp.campaign_id} : undefined);
  return (
    <Show when={params.id} fallback={
      <ListView
        resource="ads"
        title="Ads"
        base="/ads"
        canCreate={canWrite()}
        canArchive={canWrite()}
        statuses={STATUS3}
        filters={filters()}
        columns={[
          {key: 'campaign_id', label: 'Campaign', render: (r) => <A href={`/campaigns/${r.campaign_id}`}>#{String(r.campaign_id)}</A>},
          {key: 'creative_id', label: 'Creative', render: (r) => <A href={`/creatives/${r.creative_id}`}>#{String(r.creative_id)}</A>},
          statusCol(),
          {key: 'weight', label: 'Weight', width: '5rem'},
          {key: 'landing_url', label: 'Landing URL', width: 'minmax(10rem, 2fr)', render: (r) => <span class="ellipsis">{String(r.landing_url ?? '—')}</span>},
          {key: 'targeting', label: 'Targeting', render: (r) => summarize(r.targeting as never)},
        ]}
      />
    }>
      <EditView resource="ads" what="Ad" fields={SPECS.ads} base="/ads" readOnly={!canWrite()} defaults={typeof sp.campaign_id === 'string' ? {campaign_id: sp.campaign_id} : undefined} />
    </Show>
  );
}

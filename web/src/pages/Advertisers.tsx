import {Show} from 'solid-js';
import {useParams} from '@solidjs/router';
import {ListView, EditView, nameCol, statusCol} from '../components/ResourcePages';
import {SPECS, STATUS3} from '../lib/fields';
import {canOperate, canWrite} from '../auth';
import {formatMicros} from '../lib/format';

export default function Advertisers() {
  const params = useParams();
  return (
    <Show when={params.id} fallback={
      <ListView
        resource="advertisers"
        title="Advertisers"
        base="/advertisers"
        canCreate={canOperate()}
        canArchive={canOperate()}
        statuses={STATUS3}
        columns={[
          nameCol('/advertisers'),
          statusCol(),
          {key: 'currency', label: 'Currency', width: '6rem'},
          {key: 'timezone', label: 'Time zone'},
          {key: 'credit_limit_micros', label: 'Credit limit', render: (r) => formatMicros(r.credit_limit_micros as number | null, r.currency as string)},
        ]}
      />
    }>
      <EditView resource="advertisers" what="Advertiser" fields={SPECS.advertisers} base="/advertisers" readOnly={!canWrite() || (params.id === 'new' && !canOperate())} />
    </Show>
  );
}

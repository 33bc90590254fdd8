// Publishers, sites/apps and placements; a placement shows its copyable ad tag and a live preview
// (an iframe of the data plane's GET /v1/ad for the placement: a real ad request).
import {createSignal, Show, Switch, Match} from 'solid-js';
import {A, useLocation, useParams} from '@solidjs/router';
import {createQuery} from '@tanstack/solid-query';
import {ListView, EditView, nameCol, statusCol} from '../components/ResourcePages';
import {SPECS, STATUS3} from '../lib/fields';
import {canOperate, canWrite} from '../auth';
import {placementTag} from '../api/client';
import {errorMessage} from '../api/errors';
import {formatMicros} from '../lib/format';
import {Btn, copyText, Loading} from '../components/ui';

/** The data plane's origin, read from the tag's script URL. */
export function tagOrigin(tag: string): string | null {
  const m = /src="(https?:\/\/[^/"]+)\/v1\/tag\.js"/.exec(tag);
  return m ? m[1] : null;
}

function TagPanel(props: {id: number; sizes: string[]}) {
  const tag = createQuery(() => ({queryKey: ['placements', 'tag', props.id], queryFn: () => placementTag(props.id)}));
  const [copied, setCopied] = createSignal('');
  const [live, setLive] = createSignal(false);
  const size = () => {
    const m = /^(\d+)x(\d+)$/.exec(props.sizes[0] ?? '');
    return m ? {w: Number(m[1]), h: Number(m[2])} : {w: 300, h: 250};
  };
  let area!: HTMLTextAreaElement;
  return (
    <section class="card">
      <h2>Ad tag</h2>
      <Switch>
        <Match when={tag.isPending}><Loading /></Match>
        <Match when={tag.isError}><p class="state error">{errorMessage(tag.error)}</p></Match>
        <Match when={tag.data}>
          <label for="ad-tag">Paste this where the ad should appear:</label>
          <textarea id="ad-tag" ref={area} class="mono tag-code" readOnly rows={3} value={tag.data!.tag ?? ''} onFocus={(e) => e.currentTarget.select()} />
          <div class="actions">
            <Btn
              kind="primary"
              onClick={async () => {
                const ok = await copyText(tag.data!.tag ?? '');
                if (!ok) {
                  area.select();
                  document.execCommand?.('copy');
                }
                setCopied('Copied to the clipboard');
                setTimeout(() => setCopied(''), 2500);
              }}
            >
              Copy tag
            </Btn>
            <span role="status" class="muted">{copied()}</span>
          </div>
          <h3>Live preview</h3>
          <Show
            when={live()}
            fallback={
              <>
                <p class="muted small">The preview asks the ad server for a real ad for this placement (it counts as an impression).</p>
                <Btn onClick={() => setLive(true)} disabled={!tagOrigin(tag.data!.tag ?? '')}>Load live preview</Btn>
              </>
            }
          >
            <iframe
              class="preview-frame"
              title="Live preview of the placement"
              sandbox="allow-scripts allow-popups allow-popups-to-escape-sandbox"
              src={`${tagOrigin(tag.data!.tag ?? '')}/v1/ad?placement=${props.id}`}
              width={size().w}
              height={size().h}
            />
          </Show>
        </Match>
      </Switch>
    </section>
  );
}

export default function Inventory() {
  const params = useParams();
  const location = useLocation();
  const kind = () => location.pathname.split('/')[1] as 'publishers' | 'sites' | 'placements';
  return (
    <Switch>
      <Match when={kind() === 'publishers'}>
        <Show when={params.id} fallback={
          <ListView resource="publishers" title="Publishers" base="/publishers" canCreate={canOperate()} canArchive={canOperate()} statuses={STATUS3}
            columns={[
              nameCol('/publishers'),
              statusCol(),
              {key: 'currency', label: 'Currency', width: '6rem'},
              {key: 'revenue_share_ppm', label: 'Revenue share', render: (r) => `${(Number(r.revenue_share_ppm) / 10000).toFixed(2)}%`},
              {key: 'sites', label: 'Sites', render: (r) => <A href={`/sites?publisher_id=${r.id}`}>sites</A>},
            ]} />
        }>
          <EditView resource="publishers" what="Publisher" fields={SPECS.publishers} base="/publishers" readOnly={!canWrite()} />
        </Show>
      </Match>
      <Match when={kind() === 'sites'}>
        <Show when={params.id} fallback={
          <ListView resource="sites" title="Sites & apps" base="/sites" canCreate={canWrite()} canArchive={canWrite()} statuses={STATUS3}
            filters={new URLSearchParams(location.search).get('publisher_id') ? {publisher_id: new URLSearchParams(location.search).get('publisher_id')!} : undefined}
            columns={[
              nameCol('/sites'),
              statusCol(),
              {key: 'publisher_id', label: 'Publisher', width: '6rem', render: (r) => <A href={`/publishers/${r.publisher_id}`}>#{String(r.publisher_id)}</A>},
              {key: 'kind', label: 'Kind', width: '5rem'},
              {key: 'domain', label: 'Domain / bundle', render: (r) => String(r.domain ?? r.bundle_id ?? '—')},
              {key: 'placements', label: 'Placements', render: (r) => <A href={`/placements?site_id=${r.id}`}>placements</A>},
            ]} />
        }>
          <EditView resource="sites" what="Site" fields={SPECS.sites} base="/sites" readOnly={!canWrite()} />
        </Show>
      </Match>
      <Match when={kind() === 'placements'}>
        <Show when={params.id} fallback={
          <ListView resource="placements" title="Placements" base="/placements" canCreate={canWrite()} canArchive={canWrite()} statuses={STATUS3}
            filters={new URLSearchParams(location.search).get('site_id') ? {site_id: new URLSearchParams(location.search).get('site_id')!} : undefined}
            columns={[
              nameCol('/placements'),
              statusCol(),
              {key: 'site_id', label: 'Site', width: '5rem', render: (r) => <A href={`/sites/${r.site_id}`}>#{String(r.site_id)}</A>},
              {key: 'sizes', label: 'Sizes', render: (r) => ((r.sizes as string[]) ?? []).join(', ') || 'any'},
              {key: 'floor', label: 'Floor CPM', width: '7rem', render: (r) => formatMicros(r.floor_cpm_micros as number)},
              {key: 'tag', label: 'Tag', width: '5rem', render: (r) => <A href={`/placements/${r.id}`}>get tag</A>},
            ]} />
        }>
          <EditView resource="placements" what="Placement" fields={SPECS.placements} base="/placements" readOnly={!canWrite()} openAfterCreate
            extra={(row) => <TagPanel id={Number(row.id)} sizes={(row.sizes as string[]) ?? []} />} />
        </Show>
      </Match>
    </Switch>
  );
}

// Campaign create/edit: budgets, pacing, schedule, priority, pricing, frequency caps and targeting.
// Inline validation; the API's 422 field errors appear next to their fields.
import {createSignal, For, Show, Switch, Match} from 'solid-js';
import {A, useNavigate, useParams} from '@solidjs/router';
import {useQueryClient, createQuery} from '@tanstack/solid-query';
import {create, update, list, type Campaign} from '../api/client';
import {fieldErrorMap, errorMessage} from '../api/errors';
import {type FieldSpec, toText, toValue, validateField} from '../lib/fields';
import {fromTargeting, toTargeting, validateTargeting, type TargetingState} from '../lib/targeting';
import {isoToLocalInput, localInputToIso} from '../lib/format';
import {Field, FormError, Btn, Badge, Loading} from '../components/ui';
import {FieldInput} from '../components/ResourceForm';
import {TargetingEditor} from '../components/TargetingEditor';
import {WithRow} from '../components/ResourcePages';
import {canWrite} from '../auth';

const FIELDS: FieldSpec[] = [
  {name: 'advertiser_id', label: 'Advertiser', type: 'ref', ref: 'advertisers', required: true, createOnly: true},
  {name: 'name', label: 'Name', type: 'text', required: true, maxLength: 200},
  {name: 'status', label: 'Status', type: 'select', options: ['draft', 'active', 'paused', 'archived'], default: 'draft'},
  {name: 'priority_tier', label: 'Priority tier', type: 'select', options: ['sponsorship', 'standard', 'house'], default: 'standard'},
  {name: 'priority', label: 'Priority within tier', type: 'int', min: 0, max: 1000000, default: '0', hint: 'higher first'},
  {name: 'pricing_model', label: 'Pricing model', type: 'select', options: ['cpm', 'cpc', 'cpa'], default: 'cpm'},
  {name: 'price_micros', label: 'Price', type: 'money', default: '0', hint: 'per thousand impressions (CPM), per click or per action'},
  {name: 'budget_daily_micros', label: 'Daily budget', type: 'money', nullable: true, hint: 'empty = unlimited'},
  {name: 'budget_lifetime_micros', label: 'Lifetime budget', type: 'money', nullable: true, hint: 'empty = unlimited'},
  {name: 'pacing', label: 'Pacing', type: 'select', options: ['even', 'asap'], default: 'even'},
  {name: 'selection', label: 'Ad selection', type: 'select', options: ['ecpm', 'lottery'], default: 'ecpm'},
  {name: 'goal_type', label: 'Delivery goal', type: 'select', options: ['none', 'impressions', 'clicks'], default: 'none'},
  {name: 'goal_count', label: 'Goal count', type: 'int', nullable: true, min: 1},
];

interface Cap {
  count: string;
  window_seconds: string;
  scope: string;
}

export const WINDOWS: [string, number][] = [['minute', 60], ['hour', 3600], ['day', 86400], ['week', 604800], ['30 days', 2592000]];

function CampaignForm(props: {row?: Campaign}) {
  const navigate = useNavigate();
  const qc = useQueryClient();
  const editing = !!props.row;
  const init: Record<string, string> = {};
  for (const f of FIELDS) init[f.name] = props.row ? toText(f, (props.row as Record<string, unknown>)[f.name]) : (f.default ?? '');
  const [vals, setVals] = createSignal(init);
  const [start, setStart] = createSignal(isoToLocalInput(props.row?.start_at));
  const [end, setEnd] = createSignal(isoToLocalInput(props.row?.end_at));
  const [caps, setCaps] = createSignal<Cap[]>(
    ((props.row?.frequency_caps ?? []) as {count?: number; window_seconds?: number; scope?: string}[]).map((c) => ({
      count: String(c.count ?? ''), window_seconds: String(c.window_seconds ?? 86400), scope: c.scope ?? 'campaign',
    })),
  );
  const [targeting, setTargeting] = createSignal<TargetingState>(fromTargeting(props.row?.targeting));
  const [errs, setErrs] = createSignal<Record<string, string>>({});
  const [formErr, setFormErr] = createSignal<string>();
  const [saving, setSaving] = createSignal(false);
  const readOnly = !canWrite();
  const locked = (f: FieldSpec) => readOnly || (editing && !!f.createOnly);

  const validate = (): Record<string, string> => {
    const e: Record<string, string> = {};
    for (const f of FIELDS) {
      if (locked(f)) continue;
      const m = validateField(f, vals()[f.name] ?? '');
      if (m) e[f.name] = m;
    }
    if (vals().goal_type !== 'none' && !vals().goal_count) e.goal_count = 'Needed for a delivery goal';
    const s = localInputToIso(start()), en = localInputToIso(end());
    if (s && en && en <= s) e.end_at = 'The end must be after the start';
    caps().forEach((c, i) => {
      if (!/^\d+$/.test(c.count) || Number(c.count) < 1) e[`frequency_caps[${i}]`] = 'A count of at least 1';
    });
    if (caps().length > 16) e.frequency_caps = 'At most 16 caps';
    const d = Number(toValue(FIELDS[7], vals().budget_daily_micros ?? '')), l = Number(toValue(FIELDS[8], vals().budget_lifetime_micros ?? ''));
    if (d && l && d > l) e.budget_daily_micros = 'The daily budget is above the lifetime budget';
    Object.assign(e, validateTargeting(targeting()));
    return e;
  };

  const submit = async (ev: Event) => {
    ev.preventDefault();
    const e = validate();
    setErrs(e);
    if (Object.keys(e).length) {
      setFormErr('Please correct the highlighted fields.');
      return;
    }
    setFormErr(undefined);
    const body: Record<string, unknown> = {};
    for (const f of FIELDS) {
      if (locked(f)) continue;
      const v = toValue(f, vals()[f.name] ?? '');
      if (v !== undefined) body[f.name] = v;
    }
    if (body.goal_type === 'none') body.goal_count = null;
    body.start_at = localInputToIso(start());
    body.end_at = localInputToIso(end());
    body.frequency_caps = caps().map((c) => ({count: Number(c.count), window_seconds: Number(c.window_seconds), scope: c.scope}));
    body.targeting = toTargeting(targeting());
    setSaving(true);
    try {
      const saved = editing ? await update('campaigns', Number(props.row!.id), body, props.row!.version) : await create('campaigns', body);
      await qc.invalidateQueries({queryKey: ['campaigns']});
      navigate(editing ? '/campaigns' : `/campaigns/${saved.id}`);
    } catch (err) {
      const m = fieldErrorMap(err, [...FIELDS.map((f) => f.name), 'start_at', 'end_at', 'frequency_caps', 'targeting']);
      setErrs(m);
      setFormErr(m._form ?? errorMessage(err));
    } finally {
      setSaving(false);
    }
  };
  const fieldOf = (name: string) => FIELDS.find((f) => f.name === name)!;
  const recheck = (name: string) => {
    const m = locked(fieldOf(name)) ? undefined : validateField(fieldOf(name), vals()[name] ?? '');
    if ((errs()[name] ?? undefined) === m) return;
    const n = {...errs()};
    if (m) n[name] = m;
    else delete n[name];
    setErrs(n);
    if (Object.keys(n).length === 0) setFormErr(undefined);
  };
  const input = (name: string) => (
    <Field label={fieldOf(name).label + (fieldOf(name).required && !locked(fieldOf(name)) ? ' *' : '')} error={errs()[name]} hint={fieldOf(name).hint}>
      {(id, d) => (
        <FieldInput f={fieldOf(name)} id={id} describedBy={d} value={vals()[name] ?? ''} disabled={locked(fieldOf(name))}
          onInput={(v) => {
            setVals({...vals(), [name]: v});
            if (errs()[name]) recheck(name);
          }}
          onBlur={() => recheck(name)} />
      )}
    </Field>
  );
  return (
    <form class="form" onSubmit={submit} novalidate aria-label={editing ? 'Edit campaign' : 'New campaign'}>
      <header class="page-head">
        <h1>{editing ? `Campaign #${props.row!.id}: ${props.row!.name}` : 'New campaign'}</h1>
        <Show when={editing}>
          <Badge value={props.row!.status} />
        </Show>
      </header>
      <FormError message={formErr()} />
      <fieldset class="card">
        <legend>Basics</legend>
        <div class="form-grid">
          {input('advertiser_id')}
          {input('name')}
          {input('status')}
        </div>
      </fieldset>
      <fieldset class="card">
        <legend>Schedule</legend>
        <div class="form-grid">
          <Field label="Start (local time)" error={errs().start_at} hint="empty = now">
            {(id, d) => <input id={id} type="datetime-local" value={start()} onInput={(e) => setStart(e.currentTarget.value)} aria-describedby={d} disabled={readOnly} />}
          </Field>
          <Field label="End (local time)" error={errs().end_at} hint="empty = open-ended">
            {(id, d) => <input id={id} type="datetime-local" value={end()} onInput={(e) => setEnd(e.currentTarget.value)} aria-describedby={d} disabled={readOnly} />}
          </Field>
        </div>
      </fieldset>
      <fieldset class="card">
        <legend>Pricing, priority and budgets</legend>
        <div class="form-grid">
          {input('pricing_model')}
          {input('price_micros')}
          {input('priority_tier')}
          {input('priority')}
          {input('budget_daily_micros')}
          {input('budget_lifetime_micros')}
          {input('pacing')}
          {input('selection')}
          {input('goal_type')}
          {input('goal_count')}
        </div>
      </fieldset>
      <fieldset class="card">
        <legend>Frequency caps</legend>
        <Show when={errs().frequency_caps}>
          <p class="field-error" role="alert">{errs().frequency_caps}</p>
        </Show>
        <For each={caps()} fallback={<p class="muted">No cap: a user may see the ads any number of times.</p>}>
          {(c, i) => (
            <div class="cap-row">
              <label>
                At most <input type="number" min="1" class="narrow" aria-label={`Cap ${i() + 1}: count`} value={c.count} disabled={readOnly}
                  onInput={(e) => setCaps(caps().map((x, j) => (j === i() ? {...x, count: e.currentTarget.value} : x)))} /> impressions
              </label>
              <label>
                per{' '}
                <select aria-label={`Cap ${i() + 1}: window`} value={c.window_seconds} disabled={readOnly} onChange={(e) => setCaps(caps().map((x, j) => (j === i() ? {...x, window_seconds: e.currentTarget.value} : x)))}>
                  <For each={WINDOWS}>{([l, s]) => <option value={String(s)} selected={String(s) === c.window_seconds}>{l}</option>}</For>
                  <Show when={!WINDOWS.some(([, s]) => String(s) === c.window_seconds)}>
                    <option value={c.window_seconds} selected>{c.window_seconds} s</option>
                  </Show>
                </select>
              </label>
              <label>
                for each{' '}
                <select aria-label={`Cap ${i() + 1}: scope`} value={c.scope} disabled={readOnly} onChange={(e) => setCaps(caps().map((x, j) => (j === i() ? {...x, scope: e.currentTarget.value} : x)))}>
                  <option value="campaign" selected={c.scope === 'campaign'}>campaign</option>
                  <option value="ad" selected={c.scope === 'ad'}>ad</option>
                </select>
              </label>
              <Show when={!readOnly}>
                <Btn class="small" onClick={() => setCaps(caps().filter((_, j) => j !== i()))} aria-label={`Remove cap ${i() + 1}`}>Remove</Btn>
              </Show>
              <Show when={errs()[`frequency_caps[${i()}]`]}>
                <small class="field-error" role="alert">{errs()[`frequency_caps[${i()}]`]}</small>
              </Show>
            </div>
          )}
        </For>
        <Show when={!readOnly && caps().length < 16}>
          <Btn class="small" onClick={() => setCaps([...caps(), {count: '3', window_seconds: '86400', scope: 'campaign'}])}>Add a frequency cap</Btn>
        </Show>
      </fieldset>
      <TargetingEditor value={targeting()} onChange={setTargeting} errors={errs()} />
      <div class="actions sticky">
        <Show when={!readOnly}>
          <button type="submit" class="btn primary" disabled={saving()}>
            {saving() ? 'Saving…' : editing ? 'Save changes' : 'Create campaign'}
          </button>
        </Show>
        <Btn onClick={() => navigate('/campaigns')}>{readOnly ? 'Back' : 'Cancel'}</Btn>
      </div>
    </form>
  );
}

function CampaignAds(props: {id: number}) {
  const ads = createQuery(() => ({queryKey: ['ads', 'campaign', props.id], queryFn: () => list('ads', {campaign_id: props.id, limit: 100})}));
  return (
    <section class="card">
      <h2>Ads of this campaign</h2>
      <Switch>
        <Match when={ads.isPending}><Loading /></Match>
        <Match when={ads.isError}><p class="state error">{errorMessage(ads.error)}</p></Match>
        <Match when={ads.data}>
          <ul class="plain">
            <For each={ads.data!.data} fallback={<li class="muted">No ads yet: an ad joins a creative to this campaign.</li>}>
              {(a) => <li><A href={`/ads/${a.id}`}>Ad #{a.id}</A> — creative <A href={`/creatives/${a.creative_id}`}>#{a.creative_id}</A> <Badge value={a.status} /></li>}
            </For>
          </ul>
        </Match>
      </Switch>
      <Show when={canWrite()}>
        <A class="btn" href={`/ads/new?campaign_id=${props.id}`}>Add an ad</A>
      </Show>
    </section>
  );
}

export default function CampaignEdit() {
  const params = useParams();
  return (
    <Show when={params.id !== 'new'} fallback={<CampaignForm />}>
      <WithRow resource="campaigns" what="This campaign">
        {(row) => (
          <>
            <CampaignForm row={row as Campaign} />
            <CampaignAds id={Number(row.id)} />
          </>
        )}
      </WithRow>
    </Show>
  );
}

// The targeting editor: country picker (include/exclude), device/OS/browser checkboxes, a
// days x hours grid (click, drag, or keyboard: arrows + space), keywords, site and placement
// include/exclude. State logic is in lib/targeting.ts.
import {createSignal, For, Show, createResource} from 'solid-js';
import {listAll} from '../api/client';
import {searchCountries, countryName} from '../lib/countries';
import {BROWSERS, DAYS, DEVICE_TYPES, OSES, parseList, toggleIn, toggleCell, toggleDay, toggleHour, paintRect, type TargetingState, emptyGrid} from '../lib/targeting';
import {role} from '../auth';

function Checks(props: {legend: string; options: readonly string[]; value: string[]; onChange: (v: string[]) => void}) {
  return (
    <fieldset class="checks">
      <legend>{props.legend}</legend>
      <For each={props.options}>
        {(o) => (
          <label>
            <input type="checkbox" checked={props.value.includes(o)} onChange={() => props.onChange(toggleIn(props.value, o))} /> {o}
          </label>
        )}
      </For>
      <small class="hint">none checked = any</small>
    </fieldset>
  );
}

function CountryPicker(props: {label: string; value: string[]; onChange: (v: string[]) => void; id: string}) {
  const [q, setQ] = createSignal('');
  const matches = () => searchCountries(q()).filter((c) => !props.value.includes(c)).slice(0, 8);
  const add = (c: string) => {
    props.onChange([...props.value, c]);
    setQ('');
  };
  return (
    <div class="country-picker">
      <label for={props.id}>{props.label}</label>
      <div class="chips" aria-live="polite">
        <For each={props.value}>
          {(c) => (
            <span class="chip">
              {c} {countryName(c)}
              <button type="button" aria-label={`Remove ${countryName(c)}`} onClick={() => props.onChange(props.value.filter((x) => x !== c))}>
                ×
              </button>
            </span>
          )}
        </For>
      </div>
      <input
        id={props.id}
        type="search"
        placeholder="Type a country name or code"
        value={q()}
        onInput={(e) => setQ(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter') {
            e.preventDefault();
            const m = matches();
            if (m.length) add(m[0]);
          }
        }}
        autocomplete="off"
      />
      <Show when={q().trim()}>
        <ul class="suggest" role="listbox" aria-label={`${props.label} suggestions`}>
          <For each={matches()} fallback={<li class="muted">No match</li>}>
            {(c) => (
              <li role="option" aria-selected="false">
                <button type="button" onClick={() => add(c)}>
                  {c} — {countryName(c)}
                </button>
              </li>
            )}
          </For>
        </ul>
      </Show>
    </div>
  );
}

function DaypartGrid(props: {value: TargetingState['grid']; onChange: (g: TargetingState['grid']) => void}) {
  const [drag, setDrag] = createSignal<{from: [number, number]; value: boolean; base: TargetingState['grid']} | null>(null);
  const [focus, setFocus] = createSignal<[number, number]>([1, 9]);
  const cells: HTMLButtonElement[][] = [[], [], [], [], [], [], []];
  const move = (d: number, h: number) => {
    const nd = (d + 7) % 7, nh = (h + 24) % 24;
    setFocus([nd, nh]);
    cells[nd][nh]?.focus();
  };
  const end = () => setDrag(null);
  return (
    <fieldset class="daypart" onMouseLeave={end} onMouseUp={end}>
      <legend>Days and hours (advertiser’s time zone)</legend>
      <div class="grid-actions">
        <button type="button" class="btn small" onClick={() => props.onChange(emptyGrid(true))}>All hours</button>
        <button type="button" class="btn small" onClick={() => props.onChange(emptyGrid(false).map((row, d) => row.map((_, h) => d >= 1 && d <= 5 && h >= 8 && h < 18)))}>Weekdays 8–18</button>
        <button type="button" class="btn small" onClick={() => props.onChange(emptyGrid(false))}>Clear</button>
      </div>
      <div class="dp-table" role="grid" aria-label="Days and hours">
        <div role="row" class="dp-row">
          <span class="dp-corner" />
          <For each={Array.from({length: 24}, (_, h) => h)}>
            {(h) => (
              <button type="button" class="dp-hour" tabindex="-1" onClick={() => props.onChange(toggleHour(props.value, h))} aria-label={`Toggle ${h}:00 on every day`}>
                {h}
              </button>
            )}
          </For>
        </div>
        <For each={DAYS}>
          {(day, d) => (
            <div role="row" class="dp-row">
              <button type="button" class="dp-day" tabindex="-1" onClick={() => props.onChange(toggleDay(props.value, d()))} aria-label={`Toggle all of ${day}`}>
                {day}
              </button>
              <For each={Array.from({length: 24}, (_, h) => h)}>
                {(h) => (
                  <button
                    type="button"
                    role="gridcell"
                    ref={(el) => (cells[d()][h] = el)}
                    class="dp-cell"
                    classList={{on: props.value[d()][h]}}
                    aria-pressed={props.value[d()][h]}
                    aria-label={`${day} ${h}:00`}
                    tabindex={focus()[0] === d() && focus()[1] === h ? 0 : -1}
                    onMouseDown={(e) => {
                      e.preventDefault();
                      const v = !props.value[d()][h];
                      setDrag({from: [d(), h], value: v, base: props.value});
                      props.onChange(toggleCell(props.value, d(), h));
                    }}
                    onMouseEnter={() => {
                      const g = drag();
                      if (g) props.onChange(paintRect(g.base, g.from, [d(), h], g.value));
                    }}
                    onKeyDown={(e) => {
                      const k = e.key;
                      if (k === 'ArrowRight') move(d(), h + 1);
                      else if (k === 'ArrowLeft') move(d(), h - 1);
                      else if (k === 'ArrowDown') move(d() + 1, h);
                      else if (k === 'ArrowUp') move(d() - 1, h);
                      else if (k === ' ' || k === 'Enter') props.onChange(toggleCell(props.value, d(), h));
                      else return;
                      e.preventDefault();
                    }}
                  />
                )}
              </For>
            </div>
          )}
        </For>
      </div>
    </fieldset>
  );
}

function IdPicker(props: {label: string; resource: 'sites' | 'placements'; value: number[]; onChange: (v: number[]) => void; id: string}) {
  const [rows] = createResource(() => props.resource, (r) => listAll(r, {}, 2000).catch(() => []));
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <select id={props.id} multiple size={4} onChange={(e) => props.onChange([...e.currentTarget.selectedOptions].map((o) => Number(o.value)))}>
        <For each={rows() ?? []}>
          {(r) => (
            <option value={r.id} selected={props.value.includes(Number(r.id))}>
              #{r.id} {r.name}
            </option>
          )}
        </For>
      </select>
      <Show when={rows() && rows()!.length === 0}>
        <small class="hint">No {props.resource} to list: ids can be entered below.</small>
      </Show>
      <input
        type="text"
        aria-label={`${props.label} (ids)`}
        value={props.value.join(', ')}
        onChange={(e) => props.onChange(parseList(e.currentTarget.value).map(Number).filter((n) => Number.isInteger(n) && n > 0))}
      />
    </div>
  );
}

export function TargetingEditor(props: {value: TargetingState; onChange: (s: TargetingState) => void; errors: Record<string, string>}) {
  const set = <K extends keyof TargetingState>(k: K, v: TargetingState[K]) => props.onChange({...props.value, [k]: v});
  const err = (k: string) => props.errors['targeting.' + k] ?? Object.entries(props.errors).find(([f]) => f.startsWith('targeting.' + k))?.[1];
  const inventory = () => role() !== 'advertiser';
  return (
    <fieldset class="card targeting">
      <legend>Targeting</legend>
      <Show when={props.errors.targeting}>
        <p class="field-error" role="alert">{props.errors.targeting}</p>
      </Show>
      <div class="form-grid">
        <CountryPicker id="t-cin" label="Countries to include (none = any)" value={props.value.countries_include} onChange={(v) => set('countries_include', v)} />
        <CountryPicker id="t-cex" label="Countries to exclude" value={props.value.countries_exclude} onChange={(v) => set('countries_exclude', v)} />
      </div>
      <Show when={err('countries_exclude') || err('countries_include')}>
        <p class="field-error" role="alert">{err('countries_exclude') ?? err('countries_include')}</p>
      </Show>
      <div class="check-row">
        <Checks legend="Devices" options={DEVICE_TYPES} value={props.value.device_types} onChange={(v) => set('device_types', v)} />
        <Checks legend="Operating systems" options={OSES} value={props.value.os} onChange={(v) => set('os', v)} />
        <Checks legend="Browsers" options={BROWSERS} value={props.value.browsers} onChange={(v) => set('browsers', v)} />
      </div>
      <DaypartGrid value={props.value.grid} onChange={(g) => set('grid', g)} />
      <Show when={err('dayparts')}>
        <p class="field-error" role="alert">{err('dayparts')}</p>
      </Show>
      <div class="form-grid">
        <div class="field">
          <label for="t-kany">Keywords: any of</label>
          <input id="t-kany" type="text" value={props.value.keywords_any.join(', ')} onChange={(e) => set('keywords_any', parseList(e.currentTarget.value))} />
        </div>
        <div class="field">
          <label for="t-kall">Keywords: all of</label>
          <input id="t-kall" type="text" value={props.value.keywords_all.join(', ')} onChange={(e) => set('keywords_all', parseList(e.currentTarget.value))} />
        </div>
        <div class="field">
          <label for="t-knone">Keywords: none of</label>
          <input id="t-knone" type="text" value={props.value.keywords_none.join(', ')} onChange={(e) => set('keywords_none', parseList(e.currentTarget.value))} />
        </div>
      </div>
      <Show when={err('keywords')}>
        <p class="field-error" role="alert">{err('keywords')}</p>
      </Show>
      <details open={inventory() || props.value.sites_include.length + props.value.sites_exclude.length + props.value.placements_include.length + props.value.placements_exclude.length > 0}>
        <summary>Sites and placements</summary>
        <div class="form-grid">
          <IdPicker id="t-sin" label="Sites to include" resource="sites" value={props.value.sites_include} onChange={(v) => set('sites_include', v)} />
          <IdPicker id="t-sex" label="Sites to exclude" resource="sites" value={props.value.sites_exclude} onChange={(v) => set('sites_exclude', v)} />
          <IdPicker id="t-pin" label="Placements to include" resource="placements" value={props.value.placements_include} onChange={(v) => set('placements_include', v)} />
          <IdPicker id="t-pex" label="Placements to exclude" resource="placements" value={props.value.placements_exclude} onChange={(v) => set('placements_exclude', v)} />
        </div>
        <Show when={err('sites_exclude') || err('placements_exclude') || err('sites_include') || err('placements_include')}>
          <p class="field-error" role="alert">{err('sites_exclude') ?? err('placements_exclude') ?? err('sites_include') ?? err('placements_include')}</p>
        </Show>
      </details>
    </fieldset>
  );
}

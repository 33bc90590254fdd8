// A create/edit form built from field specs (lib/fields.ts): inline validation on blur and submit,
// the API's 422 field errors next to their fields, If-Match on edit (412 explained).
import {createSignal, For, Show, createResource, type JSX} from 'solid-js';
import {useNavigate} from '@solidjs/router';
import {useQueryClient} from '@tanstack/solid-query';
import {create, update, listAll, getOne, type ResourceName} from '../api/client';
import {fieldErrorMap, errorMessage, ApiError} from '../api/errors';
import {type FieldSpec, toText, toValue, validateField, refQuery} from '../lib/fields';
import {canOperate} from '../auth';
import {Field, FormError, Btn} from './ui';

type Row = Record<string, unknown>;

function RefSelect(props: {f: FieldSpec; id: string; value: string; onChange: (v: string) => void; filter?: Record<string, string>; disabled?: boolean; describedBy?: string}) {
  const [rows] = createResource(
    () => ({r: props.f.ref!, q: props.filter ?? {}}),
    ({r, q}) => listAll(r, q, 2000),
  );
  return (
    <select id={props.id} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)} disabled={props.disabled} aria-describedby={props.describedBy} aria-required={props.f.required}>
      <option value="">{rows.loading ? 'Loading…' : rows.error ? 'Cannot load the list' : '— choose —'}</option>
      <For each={rows() ?? []}>
        {(r) => (
          <option value={String((r as Row).id)} selected={String((r as Row).id) === props.value}>
            #{String((r as Row).id)} {String((r as Row).name ?? (r as Row).email ?? '')}
          </option>
        )}
      </For>
    </select>
  );
}

export function FieldInput(props: {f: FieldSpec; id: string; value: string; onInput: (v: string) => void; onBlur?: () => void; disabled?: boolean; describedBy?: string; filter?: Record<string, string>}) {
  const f = props.f;
  const blur = () => props.onBlur?.();
  if (f.type === 'select')
    return (
      <select id={props.id} disabled={props.disabled} aria-describedby={props.describedBy} aria-required={f.required} onBlur={blur} onChange={(e) => props.onInput(e.currentTarget.value)}>
        <Show when={!f.required && !f.default}>
          <option value="">—</option>
        </Show>
        <For each={f.options ?? []}>{(o) => <option value={o} selected={o === props.value}>{o}</option>}</For>
      </select>
    );
  if (f.type === 'ref') return <RefSelect f={f} id={props.id} value={props.value} onChange={props.onInput} filter={props.filter} disabled={props.disabled} describedBy={props.describedBy} />;
  if (f.type === 'textarea')
    return <textarea id={props.id} disabled={props.disabled} aria-describedby={props.describedBy} aria-required={f.required} onBlur={blur} rows={6} value={props.value} onInput={(e) => props.onInput(e.currentTarget.value)} />;
  const type = f.type === 'password' ? 'password' : f.type === 'email' ? 'email' : f.type === 'url' ? 'url' : 'text';
  const mode = f.type === 'int' ? 'numeric' : f.type === 'money' || f.type === 'number' ? 'decimal' : undefined;
  return (
    <input id={props.id} disabled={props.disabled} aria-describedby={props.describedBy} aria-required={f.required} onBlur={blur} type={type} inputmode={mode} value={props.value}
      onInput={(e) => props.onInput(e.currentTarget.value)} autocomplete={f.type === 'password' ? 'new-password' : 'off'} />
  );
}

export function ResourceForm(props: {
  resource: ResourceName;
  fields: FieldSpec[];
  row?: Row; // editing when given
  backTo: string;
  title: string;
  readOnly?: boolean;
  defaults?: Record<string, string>;
  after?: (saved: Row) => void;
  openAfterCreate?: boolean; // go to the new object's page rather than back to the list
  children?: JSX.Element;
}) {
  const navigate = useNavigate();
  const qc = useQueryClient();
  const editing = () => !!props.row;
  const visible = () => props.fields.filter((f) => !(editing() && f.createOnly && f.type === 'password'));
  const initial: Record<string, string> = {};
  for (const f of props.fields) initial[f.name] = props.row ? toText(f, props.row[f.name]) : (props.defaults?.[f.name] ?? f.default ?? '');
  const [vals, setVals] = createSignal(initial);
  // rows that narrow a ref field's choices (refVia): fetched when the pointing field is set
  const via: Record<string, () => Row | undefined> = {};
  for (const f of props.fields) {
    const v = f.refVia;
    if (!v) continue;
    const [row] = createResource(
      () => vals()[v.field] || false,
      (id) => getOne(v.from, id) as Promise<Row>,
    );
    via[f.name] = () => (row.error || row.loading ? undefined : row());
  }
  const [errs, setErrs] = createSignal<Record<string, string>>({});
  const [formErr, setFormErr] = createSignal<string>();
  const [saving, setSaving] = createSignal(false);
  const set = (k: string, v: string) => setVals({...vals(), [k]: v});
  const locked = (f: FieldSpec) => props.readOnly || (editing() && !!f.createOnly) || (!!f.operatorOnly && !canOperate());
  const check = (f: FieldSpec) => {
    const e = locked(f) ? undefined : validateField(f, vals()[f.name] ?? '');
    const n = {...errs()};
    if (e) n[f.name] = e;
    else delete n[f.name];
    setErrs(n);
    if (Object.keys(n).length === 0) setFormErr(undefined);
    return !e;
  };
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setFormErr(undefined);
    const ok = visible().map(check).every(Boolean);
    if (!ok) {
      setFormErr('Please correct the highlighted fields.');
      (document.querySelector('.has-error input, .has-error select, .has-error textarea') as HTMLElement | null)?.focus();
      return;
    }
    const body: Record<string, unknown> = {};
    for (const f of visible()) {
      if (locked(f)) continue;
      const v = toValue(f, vals()[f.name] ?? '');
      if (v !== undefined) body[f.name] = v;
    }
    setSaving(true);
    try {
      const saved = (editing()
        ? await update(props.resource, Number(props.row!.id), body, props.row!.version as number | undefined)
        : await create(props.resource, body)) as Row;
      await qc.invalidateQueries({queryKey: [props.resource]});
      if (props.after) props.after(saved);
      else if (!editing() && props.openAfterCreate) navigate(`${props.backTo}/${saved.id}`);
      else navigate(props.backTo);
    } catch (e) {
      const m = fieldErrorMap(e, props.fields.map((f) => f.name));
      setErrs(m);
      setFormErr(m._form ?? (e instanceof ApiError && e.status === 422 ? e.message : errorMessage(e)));
    } finally {
      setSaving(false);
    }
  };
  return (
    <form class="card form" onSubmit={submit} novalidate aria-label={props.title}>
      <h2>{props.title}</h2>
      <FormError message={formErr()} />
      <div class="form-grid">
        <For each={visible()}>
          {(f) => (
            <Field label={f.label + (f.required && !locked(f) ? ' *' : '')} error={errs()[f.name]} hint={f.hint}>
              {(id, d) => (
                <FieldInput
                  f={f}
                  id={id}
                  describedBy={d}
                  value={vals()[f.name] ?? ''}
                  onInput={(v) => {
                    set(f.name, v);
                    if (errs()[f.name]) check(f); // clear (or update) the error while typing, not on blur
                  }}
                  onBlur={() => check(f)}
                  disabled={locked(f)}
                  filter={refQuery(f, vals(), via[f.name]?.())}
                />
              )}
            </Field>
          )}
        </For>
      </div>
      {props.children}
      <div class="actions">
        <Show when={!props.readOnly}>
          <button type="submit" class="btn primary" disabled={saving()}>
            {saving() ? 'Saving…' : editing() ? 'Save changes' : 'Create'}
          </button>
        </Show>
        <Btn onClick={() => navigate(props.backTo)}>{props.readOnly ? 'Back' : 'Cancel'}</Btn>
      </div>
    </form>
  );
}

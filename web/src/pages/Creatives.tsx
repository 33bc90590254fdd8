// Creatives: drag-and-drop image upload with a preview and the detected size, HTML creatives with a
// sandboxed preview (no scripts, no same-origin), approval status.
import {createSignal, Show, onCleanup, For} from 'solid-js';
import {useNavigate, useParams} from '@solidjs/router';
import {useQueryClient} from '@tanstack/solid-query';
import {ListView, nameCol, statusCol, WithRow} from '../components/ResourcePages';
import {ResourceForm, FieldInput} from '../components/ResourceForm';
import {uploadCreative, create} from '../api/client';
import {fieldErrorMap, errorMessage} from '../api/errors';
import {Badge, Field, FormError, Btn} from '../components/ui';
import {canWrite, canOperate} from '../auth';
import {STATUS3, type FieldSpec} from '../lib/fields';

const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
const MAX_BYTES = 5 * 1024 * 1024;
const ADV: FieldSpec = {name: 'advertiser_id', label: 'Advertiser', type: 'ref', ref: 'advertisers', required: true};

export function HtmlPreview(props: {html: string; width?: number | null; height?: number | null; title: string}) {
  // sandbox without allow-scripts / allow-same-origin: the markup can neither run code nor reach us
  return (
    <iframe class="preview-frame" sandbox="" title={props.title} srcdoc={props.html} width={props.width ?? 300} height={props.height ?? 250} referrerpolicy="no-referrer" loading="lazy" />
  );
}

function Upload() {
  const navigate = useNavigate();
  const qc = useQueryClient();
  const [adv, setAdv] = createSignal('');
  const [name, setName] = createSignal('');
  const [file, setFile] = createSignal<File | null>(null);
  const [url, setUrl] = createSignal<string>();
  const [size, setSize] = createSignal<{w: number; h: number} | null>(null);
  const [over, setOver] = createSignal(false);
  const [errs, setErrs] = createSignal<Record<string, string>>({});
  const [formErr, setFormErr] = createSignal<string>();
  const [busy, setBusy] = createSignal(false);
  onCleanup(() => url() && URL.revokeObjectURL(url()!));
  const pick = (f: File | undefined | null) => {
    setErrs({});
    setSize(null);
    if (url()) URL.revokeObjectURL(url()!);
    setUrl(undefined);
    setFile(null);
    if (!f) return;
    if (!IMAGE_TYPES.includes(f.type)) return setErrs({file: 'PNG, JPEG, GIF or WebP only'});
    if (f.size > MAX_BYTES) return setErrs({file: 'At most 5 MiB'});
    setFile(f);
    if (!name()) setName(f.name.replace(/\.[^.]+$/, ''));
    const u = URL.createObjectURL(f);
    setUrl(u);
    const img = new Image();
    img.onload = () => setSize({w: img.naturalWidth, h: img.naturalHeight});
    img.onerror = () => setErrs({file: 'This file is not a readable image'});
    img.src = u;
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    const v: Record<string, string> = {};
    if (!adv()) v.advertiser_id = 'Choose the advertiser';
    if (!name().trim()) v.name = 'Name is required';
    if (!file()) v.file = 'Choose or drop an image';
    setErrs(v);
    if (Object.keys(v).length) return setFormErr('Please correct the highlighted fields.');
    setBusy(true);
    setFormErr(undefined);
    try {
      const c = await uploadCreative(Number(adv()), name().trim(), file()!);
      await qc.invalidateQueries({queryKey: ['creatives']});
      navigate(`/creatives/${c.id}`);
    } catch (err) {
      const m = fieldErrorMap(err, ['advertiser_id', 'name', 'file']);
      setErrs(m);
      setFormErr(m._form ?? errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card form" onSubmit={submit} novalidate aria-label="Upload an image creative">
      <h2>Upload an image</h2>
      <FormError message={formErr()} />
      <div class="form-grid">
        <Field label="Advertiser *" error={errs().advertiser_id}>{(id, d) => <FieldInput f={ADV} id={id} describedBy={d} value={adv()} onInput={setAdv} />}</Field>
        <Field label="Name *" error={errs().name}>{(id, d) => <input id={id} type="text" value={name()} maxLength={200} onInput={(e) => setName(e.currentTarget.value)} aria-describedby={d} />}</Field>
      </div>
      <Field label="Image file (PNG, JPEG, GIF, WebP; at most 5 MiB)" error={errs().file}>
        {(id, d) => (
          <div
            class="dropzone"
            classList={{over: over()}}
            onDragOver={(e) => {
              e.preventDefault();
              setOver(true);
            }}
            onDragLeave={() => setOver(false)}
            onDrop={(e) => {
              e.preventDefault();
              setOver(false);
              pick(e.dataTransfer?.files?.[0]);
            }}
          >
            <p>Drop an image here, or</p>
            <input id={id} type="file" accept={IMAGE_TYPES.join(',')} aria-describedby={d} onChange={(e) => pick(e.currentTarget.files?.[0])} />
            <Show when={url()}>
              <figure class="upload-preview">
                <img src={url()} alt="Preview of the chosen image" />
                <figcaption>
                  {file()?.name} · {Math.ceil((file()?.size ?? 0) / 1024)} KiB
                  <Show when={size()}> · detected size <strong class="detected-size">{size()!.w}×{size()!.h}</strong></Show>
                </figcaption>
              </figure>
            </Show>
          </div>
        )}
      </Field>
      <div class="actions">
        <button type="submit" class="btn primary" disabled={busy()}>{busy() ? 'Uploading…' : 'Upload'}</button>
      </div>
    </form>
  );
}

function HtmlCreative() {
  const navigate = useNavigate();
  const qc = useQueryClient();
  const [adv, setAdv] = createSignal('');
  const [name, setName] = createSignal('');
  const [html, setHtml] = createSignal('<div style="font:16px sans-serif;padding:1em;background:#fde68a">Your ad</div>');
  const [w, setW] = createSignal('300');
  const [h, setH] = createSignal('250');
  const [errs, setErrs] = createSignal<Record<string, string>>({});
  const [formErr, setFormErr] = createSignal<string>();
  const submit = async (e: Event) => {
    e.preventDefault();
    const v: Record<string, string> = {};
    if (!adv()) v.advertiser_id = 'Choose the advertiser';
    if (!name().trim()) v.name = 'Name is required';
    if (!html().trim()) v.html = 'Markup is required';
    for (const [k, x] of [['width', w()], ['height', h()]] as const) if (!/^\d+$/.test(x) || +x < 1 || +x > 10000) v[k] = '1 to 10000 pixels';
    setErrs(v);
    if (Object.keys(v).length) return setFormErr('Please correct the highlighted fields.');
    try {
      const c = await create('creatives', {advertiser_id: Number(adv()), name: name().trim(), type: 'html', html: html(), width: Number(w()), height: Number(h())});
      await qc.invalidateQueries({queryKey: ['creatives']});
      navigate(`/creatives/${c.id}`);
    } catch (err) {
      const m = fieldErrorMap(err, ['advertiser_id', 'name', 'html', 'width', 'height']);
      setErrs(m);
      setFormErr(m._form ?? errorMessage(err));
    }
  };
  return (
    <form class="card form" onSubmit={submit} novalidate aria-label="New HTML creative">
      <h2>HTML creative</h2>
      <FormError message={formErr()} />
      <div class="form-grid">
        <Field label="Advertiser *" error={errs().advertiser_id}>{(id, d) => <FieldInput f={ADV} id={id} describedBy={d} value={adv()} onInput={setAdv} />}</Field>
        <Field label="Name *" error={errs().name}>{(id, d) => <input id={id} type="text" value={name()} onInput={(e) => setName(e.currentTarget.value)} aria-describedby={d} />}</Field>
        <Field label="Width" error={errs().width}>{(id, d) => <input id={id} type="text" inputmode="numeric" value={w()} onInput={(e) => setW(e.currentTarget.value)} aria-describedby={d} />}</Field>
        <Field label="Height" error={errs().height}>{(id, d) => <input id={id} type="text" inputmode="numeric" value={h()} onInput={(e) => setH(e.currentTarget.value)} aria-describedby={d} />}</Field>
      </div>
      <div class="split">
        <Field label="Markup *" error={errs().html}>{(id, d) => <textarea id={id} rows={8} value={html()} onInput={(e) => setHtml(e.currentTarget.value)} aria-describedby={d} class="mono" />}</Field>
        <div>
          <p class="label">Preview (sandboxed: scripts do not run here)</p>
          <HtmlPreview html={html()} width={Number(w()) || 300} height={Number(h()) || 250} title="HTML creative preview" />
        </div>
      </div>
      <div class="actions"><button type="submit" class="btn primary">Create</button></div>
    </form>
  );
}

const EDIT_FIELDS: FieldSpec[] = [
  {name: 'advertiser_id', label: 'Advertiser', type: 'ref', ref: 'advertisers', createOnly: true},
  {name: 'name', label: 'Name', type: 'text', required: true, maxLength: 200},
  {name: 'approval_status', label: 'Approval', type: 'select', options: ['pending', 'approved', 'rejected'], operatorOnly: true},
  {name: 'status', label: 'Status', type: 'select', options: STATUS3},
  {name: 'width', label: 'Width', type: 'int', min: 1, max: 10000, nullable: true},
  {name: 'height', label: 'Height', type: 'int', min: 1, max: 10000, nullable: true},
];

export default function Creatives() {
  const params = useParams();
  const [mode, setMode] = createSignal<'image' | 'html'>('image');
  return (
    <Show when={params.id} fallback={
      <ListView
        resource="creatives"
        title="Creatives"
        base="/creatives"
        canCreate={canWrite()}
        canArchive={canWrite()}
        statuses={STATUS3}
        columns={[
          {key: 'thumb', label: 'Preview', width: '5rem', render: (r) => (r.asset_path ? <img class="thumb" src={String(r.asset_path)} alt="" loading="lazy" /> : <span class="muted">{String(r.type)}</span>)},
          nameCol('/creatives'),
          {key: 'type', label: 'Type', width: '5rem'},
          {key: 'size', label: 'Size', width: '7rem', render: (r) => (r.width ? `${r.width}×${r.height}` : '—')},
          {key: 'approval_status', label: 'Approval', width: '7rem', render: (r) => <Badge value={r.approval_status as string} />},
          statusCol(),
        ]}
      />
    }>
      <Show when={params.id !== 'new'} fallback={
        <section>
          <header class="page-head"><h1>New creative</h1></header>
          <div class="tabs" role="tablist" aria-label="Creative type">
            <For each={['image', 'html'] as const}>
              {(m) => <button type="button" role="tab" aria-selected={mode() === m} class="tab" classList={{active: mode() === m}} onClick={() => setMode(m)}>{m === 'image' ? 'Image upload' : 'HTML'}</button>}
            </For>
          </div>
          <Show when={mode() === 'image'} fallback={<HtmlCreative />}><Upload /></Show>
        </section>
      }>
        <WithRow resource="creatives" what="This creative">
          {(row) => (
            <div class="split">
              <ResourceForm resource="creatives" fields={EDIT_FIELDS} row={row} backTo="/creatives" title={`Creative #${row.id}: ${String(row.name)}`} readOnly={!canWrite()} />
              <section class="card">
                <h2>Preview</h2>
                <p>
                  <Badge value={row.approval_status as string} /> {String(row.type)} {row.width ? `${row.width}×${row.height}` : ''}
                </p>
                <Show when={row.asset_path}>
                  <img class="creative-img" src={String(row.asset_path)} alt={`Creative ${String(row.name)}`} width={Number(row.width) || undefined} height={Number(row.height) || undefined} />
                </Show>
                <Show when={row.type === 'html' && row.html}>
                  <HtmlPreview html={String(row.html)} width={row.width as number} height={row.height as number} title={`Preview of ${String(row.name)}`} />
                </Show>
                <Show when={!canOperate() && row.approval_status === 'pending'}>
                  <p class="muted">Waiting for review by an operator.</p>
                </Show>
                <Btn onClick={() => history.back()}>Back</Btn>
              </section>
            </div>
          )}
        </WithRow>
      </Show>
    </Show>
  );
}

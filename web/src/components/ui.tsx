// Small shared pieces: loading/empty/error states, labelled fields with their error, badges, bars.
import {Show, type JSX, splitProps, For, untrack} from 'solid-js';
import {errorMessage} from '../api/errors';

export function Loading(props: {label?: string}) {
  return (
    <div class="state" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> {props.label ?? 'Loading…'}
    </div>
  );
}

export function Empty(props: {children: JSX.Element}) {
  return <div class="state empty">{props.children}</div>;
}

export function ErrorBox(props: {error: unknown; retry?: () => void}) {
  return (
    <div class="state error" role="alert">
      <strong>Something went wrong.</strong> {errorMessage(props.error)}
      <Show when={props.retry}>
        {' '}
        <button type="button" class="btn small" onClick={() => props.retry?.()}>
          Retry
        </button>
      </Show>
    </div>
  );
}

let fieldSeq = 0;
/**
 * A labelled control with its hint and error. The control is created once (children is called
 * untracked), so a changing error never replaces the element that has focus; aria-describedby
 * names the error's id always (a missing id is ignored by assistive technology).
 */
export function Field(props: {label: string; error?: string; hint?: string; children: (id: string, describedBy: string | undefined) => JSX.Element; class?: string}) {
  const id = 'f' + ++fieldSeq;
  const control = untrack(() => props.children(id, [id + '-err', props.hint ? id + '-hint' : ''].filter(Boolean).join(' ')));
  return (
    <div class={'field ' + (props.class ?? '') + (props.error ? ' has-error' : '')}>
      <label for={id}>{props.label}</label>
      {control}
      <Show when={props.hint}>
        <small id={id + '-hint'} class="hint">
          {props.hint}
        </small>
      </Show>
      <Show when={props.error}>
        <small id={id + '-err'} class="field-error" role="alert">
          {props.error}
        </small>
      </Show>
    </div>
  );
}

export function FormError(props: {message?: string}) {
  return (
    <Show when={props.message}>
      <div class="form-error" role="alert">
        {props.message}
      </div>
    </Show>
  );
}

export function Badge(props: {value?: string | null}) {
  return <span class={'badge badge-' + (props.value ?? 'none')}>{props.value ?? '—'}</span>;
}

/** spend/budget bar with a marker where spend should be by now (even pacing). */
export function PacingBar(props: {spent: number | null; budget: number | null; expected?: number | null; label: string}) {
  const pct = () => (props.spent !== null && props.budget ? Math.min(100, (props.spent / props.budget) * 100) : 0);
  const exp = () => (props.expected !== null && props.expected !== undefined ? Math.min(100, props.expected * 100) : null);
  return (
    <div class="pacing" role="meter" aria-label={props.label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct())}>
      <div class="pacing-fill" classList={{over: exp() !== null && pct() > (exp() ?? 0) + 10}} style={{width: pct() + '%'}} />
      <Show when={exp() !== null}>
        <div class="pacing-mark" style={{left: exp() + '%'}} title="expected by now" />
      </Show>
    </div>
  );
}

export function Tiles(props: {items: {label: string; value: string; sub?: string}[]}) {
  return (
    <div class="tiles">
      <For each={props.items}>
        {(t) => (
          <div class="tile">
            <div class="tile-label">{t.label}</div>
            <div class="tile-value">{t.value}</div>
            <Show when={t.sub}>
              <div class="tile-sub">{t.sub}</div>
            </Show>
          </div>
        )}
      </For>
    </div>
  );
}

export function Btn(props: JSX.ButtonHTMLAttributes<HTMLButtonElement> & {kind?: 'primary' | 'danger' | 'plain'}) {
  const [l, rest] = splitProps(props, ['kind', 'class']);
  return <button type="button" class={`btn ${l.kind ?? ''} ${l.class ?? ''}`} {...rest} />;
}

export function copyText(text: string): Promise<boolean> {
  if (navigator.clipboard?.writeText) return navigator.clipboard.writeText(text).then(() => true, () => false);
  return Promise.resolve(false);
}

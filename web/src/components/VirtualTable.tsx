// A virtualised table: only the rows in view (plus a margin) are in the DOM, so 10,000 rows scroll
// smoothly; rows come in cursor pages (infinite query) fetched as the end comes into view.
import {createMemo, createSignal, For, Show, type JSX, onMount, onCleanup} from 'solid-js';

export interface Column<T> {
  key: string;
  label: string;
  width?: string;
  render?: (row: T) => JSX.Element;
  class?: string;
}

export const ROW_HEIGHT = 44;

/** Which rows to draw for a scroll position. Pure (unit-tested). */
export function visibleRange(scrollTop: number, viewport: number, total: number, rowHeight = ROW_HEIGHT, overscan = 8) {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(total, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  return {first, last};
}

export function VirtualTable<T>(props: {
  rows: T[];
  columns: Column<T>[];
  label: string;
  rowKey: (r: T) => string | number;
  onEnd?: () => void;
  loadingMore?: boolean;
  height?: string;
}) {
  let box!: HTMLDivElement;
  const [top, setTop] = createSignal(0);
  const [view, setView] = createSignal(600);
  const range = createMemo(() => visibleRange(top(), view(), props.rows.length));
  const grid = () => props.columns.map((c) => c.width ?? 'minmax(6rem, 1fr)').join(' ');
  onMount(() => {
    const ro = new ResizeObserver(() => setView(box.clientHeight));
    ro.observe(box);
    onCleanup(() => ro.disconnect());
  });
  const onScroll = () => {
    setTop(box.scrollTop);
    if (props.onEnd && box.scrollTop + box.clientHeight > props.rows.length * ROW_HEIGHT - ROW_HEIGHT * 20) props.onEnd();
  };
  return (
    <div class="vtable" role="table" aria-label={props.label} aria-rowcount={props.rows.length + 1}>
      <div class="vrow vhead" role="row" style={{'grid-template-columns': grid()}}>
        <For each={props.columns}>{(c) => <div role="columnheader" class={c.class}>{c.label}</div>}</For>
      </div>
      <div class="vbody" ref={box} onScroll={onScroll} style={{height: props.height ?? 'min(70vh, calc(100vh - 16rem))'}} tabindex="-1">
        <div style={{height: props.rows.length * ROW_HEIGHT + 'px', position: 'relative'}}>
          <For each={props.rows.slice(range().first, range().last)}>
            {(r, i) => (
              <div
                class="vrow"
                role="row"
                aria-rowindex={range().first + i() + 2}
                style={{'grid-template-columns': grid(), transform: `translateY(${(range().first + i()) * ROW_HEIGHT}px)`}}
              >
                <For each={props.columns}>
                  {(c) => (
                    <div role="cell" class={c.class}>
                      {c.render ? c.render(r) : String((r as Record<string, unknown>)[c.key] ?? '—')}
                    </div>
                  )}
                </For>
              </div>
            )}
          </For>
        </div>
      </div>
      <Show when={props.loadingMore}>
        <div class="state small" role="status">Loading more…</div>
      </Show>
    </div>
  );
}

// Generic list and edit pages for a resource: a virtualised, cursor-paginated list (infinite query)
// with a status filter and archive action; an edit page that loads one row (404 for another
// tenant's row, exactly like a missing one) into ResourceForm.
import {createMemo, createSignal, Show, For, type JSX, Switch, Match} from 'solid-js';
import {A, useParams} from '@solidjs/router';
import {createInfiniteQuery, createQuery, useQueryClient} from '@tanstack/solid-query';
import {list, getOne, archive, type ResourceName, type Page} from '../api/client';
import {ApiError, errorMessage} from '../api/errors';
import type {FieldSpec} from '../lib/fields';
import {VirtualTable, type Column} from './VirtualTable';
import {Loading, Empty, ErrorBox, Badge} from './ui';
import {ResourceForm} from './ResourceForm';

type Row = Record<string, unknown> & {id?: number};

export const PAGE_SIZE = 500;

export function useInfiniteList(resource: () => ResourceName, query: () => Record<string, string>) {
  return createInfiniteQuery(() => ({
    queryKey: [resource(), 'list', query()],
    queryFn: ({pageParam, signal}) =>
      list(resource(), {...query(), limit: PAGE_SIZE, cursor: pageParam ?? undefined}, signal) as Promise<Page<Row>>,
    initialPageParam: null as string | null,
    getNextPageParam: (last: Page<Row>) => last.next_cursor ?? undefined,
  }));
}

export function ListView(props: {
  resource: ResourceName;
  title: string;
  columns: Column<Row>[];
  base: string; // route of the list: rows link to base/:id, "New" to base/new
  canCreate?: boolean;
  canArchive?: boolean;
  statuses?: readonly string[];
  filters?: Record<string, string>;
  empty?: JSX.Element;
  toolbar?: JSX.Element;
}) {
  const [status, setStatus] = createSignal('');
  const qc = useQueryClient();
  const q = useInfiniteList(
    () => props.resource,
    () => ({...(props.filters ?? {}), ...(status() ? {status: status()} : {})}),
  );
  const rows = createMemo(() => q.data?.pages.flatMap((p) => p.data) ?? []);
  const [actionErr, setActionErr] = createSignal<string>();
  const doArchive = async (r: Row) => {
    if (!confirm(`Archive "${String(r.name ?? r.id)}"?`)) return;
    try {
      await archive(props.resource, Number(r.id));
      await qc.invalidateQueries({queryKey: [props.resource]});
    } catch (e) {
      setActionErr(errorMessage(e));
    }
  };
  const columns = (): Column<Row>[] => [
    {key: 'id', label: '#', width: '4.5rem', render: (r) => <A href={`${props.base}/${r.id}`}>#{r.id}</A>},
    ...props.columns,
    ...(props.canArchive
      ? [{key: '_act', label: 'Actions', width: '7rem', render: (r: Row) => (
            <Show when={r.status !== 'archived'}>
              <button type="button" class="btn small" onClick={() => doArchive(r)} aria-label={`Archive ${String(r.name ?? r.id)}`}>
                Archive
              </button>
            </Show>
          )}]
      : []),
  ];
  return (
    <section>
      <header class="page-head">
        <h1>{props.title}</h1>
        <div class="toolbar">
          {props.toolbar}
          <Show when={props.statuses}>
            <label class="inline">
              Status{' '}
              <select value={status()} onChange={(e) => setStatus(e.currentTarget.value)}>
                <option value="">all</option>
                <For each={props.statuses}>{(s) => <option value={s}>{s}</option>}</For>
              </select>
            </label>
          </Show>
          <Show when={props.canCreate}>
            <A class="btn primary" href={`${props.base}/new`}>
              New
            </A>
          </Show>
        </div>
      </header>
      <Show when={actionErr()}>
        <div class="form-error" role="alert">{actionErr()}</div>
      </Show>
      <Switch>
        <Match when={q.isPending}>
          <Loading />
        </Match>
        <Match when={q.isError}>
          <ErrorBox error={q.error} retry={() => q.refetch()} />
        </Match>
        <Match when={rows().length === 0}>
          <Empty>{props.empty ?? `No ${props.title.toLowerCase()} yet.`}</Empty>
        </Match>
        <Match when={true}>
          <p class="muted small">
            {rows().length.toLocaleString()} shown{q.hasNextPage ? ' (more load as you scroll)' : ''}
          </p>
          <VirtualTable
            rows={rows()}
            columns={columns()}
            label={props.title}
            rowKey={(r) => Number(r.id)}
            loadingMore={q.isFetchingNextPage}
            onEnd={() => {
              if (q.hasNextPage && !q.isFetchingNextPage) q.fetchNextPage();
            }}
          />
        </Match>
      </Switch>
    </section>
  );
}

export function statusCol(): Column<Row> {
  return {key: 'status', label: 'Status', width: '7rem', render: (r) => <Badge value={r.status as string} />};
}

export function nameCol(base: string): Column<Row> {
  return {key: 'name', label: 'Name', width: 'minmax(10rem, 2fr)', render: (r) => <A href={`${base}/${r.id}`}>{String(r.name ?? '')}</A>};
}

export function NotFound(props: {what?: string}) {
  return (
    <section class="card">
      <h1>Not found</h1>
      <p>{props.what ?? 'This page'} does not exist, or belongs to another account.</p>
      <A href="/">Back to the overview</A>
    </section>
  );
}

export function useOne(resource: () => ResourceName, id: () => string) {
  return createQuery(() => ({
    queryKey: [resource(), 'one', id()],
    queryFn: () => getOne(resource(), id()) as Promise<Row>,
    enabled: id() !== 'new',
    retry: (n: number, e: Error) => !(e instanceof ApiError && e.status < 500) && n < 2,
  }));
}

/** Loads :id and renders children(row), with loading / not found / error states. */
export function WithRow(props: {resource: ResourceName; what: string; children: (row: Row) => JSX.Element}) {
  const params = useParams();
  const q = useOne(() => props.resource, () => params.id ?? "");
  return (
    <Switch>
      <Match when={!/^\d+$/.test(params.id ?? "")}>
        <NotFound what={props.what} />
      </Match>
      <Match when={q.isPending}>
        <Loading />
      </Match>
      <Match when={q.isError && q.error instanceof ApiError && (q.error as ApiError).status === 404}>
        <NotFound what={props.what} />
      </Match>
      <Match when={q.isError}>
        <ErrorBox error={q.error} retry={() => q.refetch()} />
      </Match>
      <Match when={q.data}>{(row) => props.children(row())}</Match>
    </Switch>
  );
}

export function EditView(props: {resource: ResourceName; what: string; fields: FieldSpec[]; base: string; readOnly?: boolean; defaults?: Record<string, string>; openAfterCreate?: boolean; extra?: (row: Row) => JSX.Element}) {
  const params = useParams();
  return (
    <Show
      when={params.id !== 'new'}
      fallback={<ResourceForm resource={props.resource} fields={props.fields} backTo={props.base} title={`New ${props.what}`} defaults={props.defaults} openAfterCreate={props.openAfterCreate} />}
    >
      <WithRow resource={props.resource} what={`This ${props.what}`}>
        {(row) => (
          <>
            <ResourceForm resource={props.resource} fields={props.fields} row={row} backTo={props.base} title={`${props.what} #${row.id}: ${String(row.name ?? row.email ?? '')}`} readOnly={props.readOnly} />
            {props.extra?.(row)}
          </>
        )}
      </WithRow>
    </Show>
  );
}

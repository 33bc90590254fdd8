// Users (admin) and API keys (everyone: their own; admins see all). A new key is shown once.
import {createSignal, Show, For, Switch, Match} from 'solid-js';
import {useLocation, useParams} from '@solidjs/router';
import {createQuery, useQueryClient} from '@tanstack/solid-query';
import {ListView, EditView} from '../components/ResourcePages';
import {SPECS} from '../lib/fields';
import {isAdmin} from '../auth';
import {createApiKey, revokeApiKey, listAll, type ApiKeyCreated} from '../api/client';
import {errorMessage, fieldErrorMap} from '../api/errors';
import {formatDate} from '../lib/format';
import {Field, FormError, Loading, ErrorBox, Empty, Badge, copyText} from '../components/ui';

function ApiKeys() {
  const qc = useQueryClient();
  const keys = createQuery(() => ({queryKey: ['api-keys'], queryFn: () => listAll('api-keys')}));
  const [name, setName] = createSignal('');
  const [err, setErr] = createSignal<Record<string, string>>({});
  const [formErr, setFormErr] = createSignal<string>();
  const [created, setCreated] = createSignal<ApiKeyCreated | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!name().trim()) return setErr({name: 'Give the key a name'});
    setErr({});
    setFormErr(undefined);
    try {
      setCreated(await createApiKey({name: name().trim()}));
      setName('');
      await qc.invalidateQueries({queryKey: ['api-keys']});
    } catch (x) {
      setErr(fieldErrorMap(x, ['name']));
      setFormErr(errorMessage(x));
    }
  };
  const revoke = async (id: number) => {
    if (!confirm('Revoke this key? Programs using it stop working at once.')) return;
    try {
      await revokeApiKey(id);
      await qc.invalidateQueries({queryKey: ['api-keys']});
    } catch (x) {
      setFormErr(errorMessage(x));
    }
  };
  return (
    <section>
      <header class="page-head"><h1>API keys</h1></header>
      <form class="card form" onSubmit={submit} novalidate aria-label="Create an API key">
        <FormError message={formErr()} />
        <div class="inline-form">
          <Field label="Name of the new key" error={err().name}>{(id, d) => <input id={id} type="text" maxLength={100} value={name()} onInput={(e) => setName(e.currentTarget.value)} aria-describedby={d} />}</Field>
          <button type="submit" class="btn primary">Create key</button>
        </div>
        <Show when={created()}>
          <div class="notice" role="status">
            <p>Copy the key now: it is shown only this once.</p>
            <code class="mono">{created()!.key}</code>{' '}
            <button type="button" class="btn small" onClick={() => copyText(created()!.key ?? '')}>Copy</button>
          </div>
        </Show>
      </form>
      <Switch>
        <Match when={keys.isPending}><Loading /></Match>
        <Match when={keys.isError}><ErrorBox error={keys.error} retry={() => keys.refetch()} /></Match>
        <Match when={keys.data!.length === 0}><Empty>No API keys yet.</Empty></Match>
        <Match when={true}>
          <div class="table-wrap">
            <table>
              <thead><tr><th scope="col">#</th><th scope="col">Name</th><th scope="col">Prefix</th><Show when={isAdmin()}><th scope="col">User</th></Show><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
              <tbody>
                <For each={keys.data}>
                  {(k) => (
                    <tr>
                      <td>{k.id}</td><td>{k.name}</td><td class="mono">{k.prefix}…</td>
                      <Show when={isAdmin()}><td>#{k.user_id}</td></Show>
                      <td>{formatDate(k.created_at)}</td><td>{formatDate(k.last_used_at)}</td>
                      <td><Badge value={k.revoked ? 'revoked' : 'active'} /></td>
                      <td><Show when={!k.revoked}><button type="button" class="btn small danger" onClick={() => revoke(Number(k.id))} aria-label={`Revoke key ${k.name}`}>Revoke</button></Show></td>
                    </tr>
                  )}
                </For>
              </tbody>
            </table>
          </div>
        </Match>
      </Switch>
    </section>
  );
}

export default function Users() {
  const location = useLocation();
  const params = useParams();
  return (
    <Show when={!location.pathname.startsWith('/api-keys')} fallback={<ApiKeys />}>
      <Show when={params.id} fallback={
        <ListView resource="users" title="Users" base="/users" canCreate={isAdmin()}
          columns={[
            {key: 'email', label: 'E-mail', width: 'minmax(12rem, 2fr)'},
            {key: 'role', label: 'Role', width: '7rem', render: (r) => <Badge value={r.role as string} />},
            {key: 'scope', label: 'Accounts', render: (r) => [...((r.advertiser_ids as number[]) ?? []).map((i) => 'adv #' + i), ...((r.publisher_ids as number[]) ?? []).map((i) => 'pub #' + i)].join(', ') || '—'},
            {key: 'created_at', label: 'Created', render: (r) => formatDate(r.created_at as string)},
          ]} />
      }>
        <EditView resource="users" what="User" fields={SPECS.users} base="/users" readOnly={params.id !== 'new'} />
      </Show>
    </Show>
  );
}

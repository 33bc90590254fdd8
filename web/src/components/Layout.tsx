// The shell: a role-aware navigation, the signed-in user with a logout button, and the session
// gate (no token: the login page; a 401 anywhere clears the token and comes back here).
import {createEffect, createResource, createSignal, For, Show, Suspense, type JSX} from 'solid-js';
import {A, useLocation, useNavigate} from '@solidjs/router';
import {useQueryClient} from '@tanstack/solid-query';
import {logout} from '../api/client';
import {loadMe, token, user, role, isAdmin, seesAdvertising, seesInventory} from '../auth';
import {Loading, ErrorBox} from './ui';

interface NavItem {
  href: string;
  label: string;
  show: () => boolean;
}

const NAV: NavItem[] = [
  {href: '/', label: 'Overview', show: () => true},
  {href: '/advertisers', label: 'Advertisers', show: seesAdvertising},
  {href: '/campaigns', label: 'Campaigns', show: seesAdvertising},
  {href: '/creatives', label: 'Creatives', show: seesAdvertising},
  {href: '/ads', label: 'Ads', show: seesAdvertising},
  {href: '/publishers', label: 'Publishers', show: seesInventory},
  {href: '/sites', label: 'Sites & apps', show: seesInventory},
  {href: '/placements', label: 'Placements', show: seesInventory},
  {href: '/demand-partners', label: 'Demand partners', show: () => role() === 'admin' || role() === 'viewer'},
  {href: '/reports', label: 'Reports', show: () => true},
  {href: '/users', label: 'Users', show: isAdmin},
  {href: '/api-keys', label: 'API keys', show: () => true},
  {href: '/audit-log', label: 'Audit log', show: isAdmin},
  {href: '/health', label: 'System health', show: () => role() === 'admin' || role() === 'viewer'},
];

/** Admin-only paths: a tenant who types them gets "not found", like any other foreign object. */
export const ADMIN_ONLY = ['/users', '/audit-log', '/demand-partners', '/health'];

export function Layout(props: {children?: JSX.Element}) {
  const location = useLocation();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const [menuOpen, setMenuOpen] = createSignal(false);
  const [me, {refetch}] = createResource(token, () => loadMe());
  createEffect(() => {
    if (!token() && location.pathname !== '/login') navigate('/login?next=' + encodeURIComponent(location.pathname + location.search), {replace: true});
  });
  createEffect(() => {
    location.pathname;
    setMenuOpen(false);
  });
  const doLogout = async () => {
    await logout().catch(() => undefined);
    qc.clear();
    navigate('/login', {replace: true});
  };
  const forbidden = () => {
    const p = location.pathname;
    const r = role();
    if (!r) return false;
    if (r !== 'admin' && (p.startsWith('/users') || p.startsWith('/audit-log'))) return true;
    if ((r === 'advertiser' || r === 'publisher') && (p.startsWith('/demand-partners') || p.startsWith('/health'))) return true;
    if (r === 'advertiser' && /^\/(publishers|sites|placements)/.test(p)) return true;
    if (r === 'publisher' && /^\/(advertisers|campaigns|creatives|ads)/.test(p)) return true;
    return false;
  };
  return (
    <Show when={location.pathname !== '/login'} fallback={props.children}>
      <Show when={token()}>
        <div class="shell">
          <a class="skip" href="#main">
            Skip to content
          </a>
          <header class="topbar">
            <button type="button" class="btn menu-btn" aria-expanded={menuOpen()} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen())}>
              Menu
            </button>
            <A href="/" class="brand">
              AdPlatform
            </A>
            <div class="who">
              <Show when={user()}>
                <span class="muted">
                  {user()!.email} · {user()!.role}
                </span>
              </Show>
              <button type="button" class="btn small" onClick={doLogout}>
                Log out
              </button>
            </div>
          </header>
          <nav id="nav" class="sidenav" classList={{open: menuOpen()}} aria-label="Main">
            <ul>
              <For each={NAV}>
                {(n) => (
                  <Show when={user() && n.show()}>
                    <li>
                      <A href={n.href} end={n.href === '/'} activeClass="active">
                        {n.label}
                      </A>
                    </li>
                  </Show>
                )}
              </For>
            </ul>
          </nav>
          <main id="main" tabindex="-1">
            <Show when={!me.error} fallback={<ErrorBox error={me.error} retry={refetch} />}>
              <Show when={user()} fallback={<Loading />}>
                <Show
                  when={!forbidden()}
                  fallback={
                    <section class="card">
                      <h1>Not found</h1>
                      <p>This page does not exist, or is not available to your account.</p>
                    </section>
                  }
                >
                  <Suspense fallback={<Loading />}>{props.children}</Suspense>
                </Show>
              </Show>
            </Show>
          </main>
        </div>
      </Show>
    </Show>
  );
}

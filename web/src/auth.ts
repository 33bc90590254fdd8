// The signed-in user (GET /api/v1/users/me) and what the role may see. The token itself is kept by
// api/client.ts in sessionStorage; this module mirrors it as a signal.
import {createSignal} from 'solid-js';
import {getToken, me, onTokenChange, type User} from './api/client';

const [token, setTokenSignal] = createSignal<string | null>(getToken());
onTokenChange((t) => setTokenSignal(t));
export {token};

const [user, setUser] = createSignal<User | null>(null);
export {user, setUser};

export async function loadMe(): Promise<User | null> {
  if (!getToken()) {
    setUser(null);
    return null;
  }
  const u = await me();
  setUser(u);
  return u;
}

export type Role = 'admin' | 'advertiser' | 'publisher' | 'viewer';
export const role = (): Role | null => (user()?.role as Role | undefined) ?? null;
export const isAdmin = () => role() === 'admin';
/** May write operator objects (create advertisers/publishers, demand partners, users). */
export const canOperate = () => role() === 'admin';
/** May write at all (viewers read only). */
export const canWrite = () => role() !== null && role() !== 'viewer';
export const seesAdvertising = () => role() === 'admin' || role() === 'viewer' || role() === 'advertiser';
export const seesInventory = () => role() === 'admin' || role() === 'viewer' || role() === 'publisher';

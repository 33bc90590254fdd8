import {createSignal, Show} from 'solid-js';
import {useNavigate, useSearchParams} from '@solidjs/router';
import {login} from '../api/client';
import {errorMessage, fieldErrorMap} from '../api/errors';
import {Field, FormError} from '../components/ui';
import {loadMe} from '../auth';

export default function Login() {
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [email, setEmail] = createSignal('');
  const [password, setPassword] = createSignal('');
  const [errs, setErrs] = createSignal<Record<string, string>>({});
  const [formErr, setFormErr] = createSignal<string>();
  const [busy, setBusy] = createSignal(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const v: Record<string, string> = {};
    if (!email().trim()) v.email = 'Enter your e-mail address';
    if (!password()) v.password = 'Enter your password';
    setErrs(v);
    setFormErr(undefined);
    if (Object.keys(v).length) return;
    setBusy(true);
    try {
      await login(email().trim(), password());
      await loadMe();
      const next = typeof params.next === 'string' && params.next.startsWith('/') && !params.next.startsWith('//') ? params.next : '/';
      navigate(next, {replace: true});
    } catch (err) {
      setErrs(fieldErrorMap(err, ['email', 'password']));
      setFormErr(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login-page" id="main">
      <form class="card login" onSubmit={submit} novalidate aria-labelledby="login-title">
        <h1 id="login-title">Sign in to AdPlatform</h1>
        <FormError message={formErr()} />
        <Field label="E-mail" error={errs().email}>
          {(id, d) => <input id={id} type="email" autocomplete="username" value={email()} onInput={(e) => setEmail(e.currentTarget.value)} aria-describedby={d} required />}
        </Field>
        <Field label="Password" error={errs().password}>
          {(id, d) => <input id={id} type="password" autocomplete="current-password" value={password()} onInput={(e) => setPassword(e.currentTarget.value)} aria-describedby={d} required />}
        </Field>
        <button type="submit" class="btn primary wide" disabled={busy()}>
          <Show when={busy()} fallback="Sign in">
            Signing in…
          </Show>
        </button>
        <p class="muted small">Your session is kept in this browser tab only.</p>
      </form>
    </main>
  );
}

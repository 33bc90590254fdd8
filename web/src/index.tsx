// Entry: the router (every page but the login and overview is lazy-loaded, keeping the initial JS
// small), the query client, and the session gate.
import {render} from 'solid-js/web';
import {Router, Route, Navigate} from '@solidjs/router';
import {lazy} from 'solid-js';
import {QueryClient, QueryClientProvider} from '@tanstack/solid-query';
import {ApiError} from './api/errors';
import {Layout} from './components/Layout';
import Login from './pages/Login';
import Overview from './pages/Overview';
import {NotFound} from './components/ResourcePages';
import './styles.css';

const Advertisers = lazy(() => import('./pages/Advertisers'));
const Campaigns = lazy(() => import('./pages/Campaigns'));
const CampaignEdit = lazy(() => import('./pages/CampaignEdit'));
const Creatives = lazy(() => import('./pages/Creatives'));
const Ads = lazy(() => import('./pages/Ads'));
const Inventory = lazy(() => import('./pages/Inventory'));
const Partners = lazy(() => import('./pages/DemandPartners'));
const Reports = lazy(() => import('./pages/Reports'));
const Users = lazy(() => import('./pages/Users'));
const Audit = lazy(() => import('./pages/Audit'));
const Health = lazy(() => import('./pages/Health'));

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 5_000,
      refetchOnWindowFocus: false,
      retry: (n, e) => !(e instanceof ApiError && e.status >= 400 && e.status < 500) && n < 2,
    },
  },
});

const root = document.getElementById('root')!;
render(
  () => (
    <QueryClientProvider client={queryClient}>
      <Router root={Layout}>
        <Route path="/login" component={Login} />
        <Route path="/" component={Overview} />
        <Route path="/advertisers/:id?" component={Advertisers} />
        <Route path="/campaigns" component={Campaigns} />
        <Route path="/campaigns/:id" component={CampaignEdit} />
        <Route path="/creatives/:id?" component={Creatives} />
        <Route path="/ads/:id?" component={Ads} />
        <Route path="/publishers/:id?" component={Inventory} />
        <Route path="/sites/:id?" component={Inventory} />
        <Route path="/placements/:id?" component={Inventory} />
        <Route path="/demand-partners/:id?" component={Partners} />
        <Route path="/reports" component={Reports} />
        <Route path="/users/:id?" component={Users} />
        <Route path="/api-keys" component={Users} />
        <Route path="/audit-log" component={Audit} />
        <Route path="/health" component={Health} />
        <Route path="/logout" component={() => <Navigate href="/login" />} />
        <Route path="*404" component={() => <NotFound />} />
      </Router>
    </QueryClientProvider>
  ),
  root,
);

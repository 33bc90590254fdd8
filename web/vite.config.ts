/// <reference types="vitest/config" />
// Vite build of the dashboard into web/dist, served by the control plane (src/api/ap_web.c).
// Hashed output goes to dist/static/ (not /assets/: that path serves uploaded creatives).
import {defineConfig} from 'vite';
import solid from 'vite-plugin-solid';

export default defineConfig({
  plugins: [solid()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'static',
    target: 'es2020',
    sourcemap: false,
    modulePreload: {polyfill: false},
  },
  server: {
    // `npm run dev` proxies the API to a local daemon (--admin-listen 127.0.0.1:8081)
    proxy: {
      '/api': 'http://127.0.0.1:8081',
      '/metrics': 'http://127.0.0.1:8081',
      '/healthz': 'http://127.0.0.1:8081',
      '/assets': 'http://127.0.0.1:8081',
    },
  },
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
  },
});

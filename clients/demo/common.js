// Shared by the demo pages: configuration, development tokens, the client,
// small DOM and formatting helpers. Development only: the page mints its own
// token with the development JWT secret from config.js (see README.md).
import { createClient } from './sdk/index.js';
import config from './config.js';

export const cfg = {
  courseId: 'demo-course',
  instructorId: 'demo-instructor',
  lessons: [
    { lessonId: 'demo-lesson-1', title: 'Joins, step by step', durationSec: 540 },
    { lessonId: 'demo-lesson-2', title: 'Window functions', durationSec: 480 },
  ],
  wsUrl: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  ...config,
};

export const params = new URLSearchParams(location.search);

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const enc = new TextEncoder();

/** An HS256 token like Supabase's, signed in the page with the development secret (WebCrypto). */
export async function devToken(sub, { ttlS = 3600, role } = {}) {
  if (!cfg.devJwtSecret) throw new Error('config.js has no devJwtSecret: the demo mints tokens only in development');
  if (!globalThis.crypto || !crypto.subtle) throw new Error('WebCrypto needs a secure context: open the demo via http://localhost or http://127.0.0.1');
  const now = Math.floor(Date.now() / 1000);
  const claims = { aud: 'authenticated', role: 'authenticated', sub, iat: now, exp: now + ttlS, session_id: crypto.randomUUID() };
  if (role) claims.app_metadata = { role };
  const input = b64url(enc.encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))) + '.' + b64url(enc.encode(JSON.stringify(claims)));
  const key = await crypto.subtle.importKey('raw', enc.encode(cfg.devJwtSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const sig = new Uint8Array(await crypto.subtle.sign('HMAC', key, enc.encode(input)));
  return input + '.' + b64url(sig);
}

/** A client for `userId`, with tokens minted in the page; window.rt for the console. */
export function connect(userId, role) {
  const client = createClient({ url: cfg.wsUrl, getToken: () => devToken(userId, { role, ttlS: cfg.tokenTtlS || 3600 }) });
  window.rt = client;
  return client;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else if (k === 'style') {
      // CSSOM, not the attribute: the pages' CSP (style-src 'self') refuses style attributes.
      for (const decl of String(v).split(';')) {
        const i = decl.indexOf(':');
        if (i > 0) e.style.setProperty(decl.slice(0, i).trim(), decl.slice(i + 1).trim());
      }
    }
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

export const mmss = (sec) => {
  const s = Math.max(0, Math.floor(sec || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};
export const money = (cents, cur = 'USD') => new Intl.NumberFormat('en-US', { style: 'currency', currency: cur || 'USD' }).format(Number(cents || 0) / 100);
export const num = (v, digits = 1) => (v === null || v === undefined ? '—' : Number(v).toFixed(digits));
export const ago = (iso) => {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : `${Math.floor(s / 3600)}h ago`;
};
export const lessonTitle = (id) => (cfg.lessons.find((l) => l.lessonId === id) || { title: id }).title;

/** Keeps a status pill in sync with the client's state. */
export function statusPill(el, client) {
  const show = (s) => {
    el.textContent = s;
    el.dataset.state = s;
  };
  show(client.state);
  client.on('state', show);
  client.on('disconnect', (d) => (el.title = `last close ${d.code} ${d.reason || ''}${d.willReconnect ? `, retry in ${d.delayMs} ms` : ''}`));
}

/** A transient line of text (ack times, errors). */
export function flash(el, text, kind = 'ok') {
  el.textContent = text;
  el.dataset.kind = kind;
}

// HS256 access tokens shaped like Supabase's (what auth verifies), minted
// with node:crypto: no JWT package needed. Development and tests only.
import { createHmac, randomUUID } from 'node:crypto';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function mintToken(secret, sub, { ttlS = 3600, role, now = Math.floor(Date.now() / 1000) } = {}) {
  const header = { alg: 'HS256', typ: 'JWT' };
  const claims = { aud: 'authenticated', role: 'authenticated', sub, iat: now, exp: now + ttlS, session_id: randomUUID() };
  if (role) claims.app_metadata = { role };
  const input = b64url(JSON.stringify(header)) + '.' + b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(input).digest('base64url');
  return input + '.' + sig;
}

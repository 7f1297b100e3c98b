// @unpuzzle/realtime — the ws-edge client (docs: ../README.md).
export { createClient, RealtimeClient, RealtimeError, STATES, splitFrame } from './client.js';
export { fullJitter, reconnectPlan, DEFAULT_BACKOFF } from './backoff.js';
export { trackVideo } from './video.js';
export { Emitter } from './emitter.js';

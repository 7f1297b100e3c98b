// Types of @unpuzzle/realtime (the protocol: docs/protocol.md).

export type ConnectionState = 'connecting' | 'authenticating' | 'open' | 'reconnecting' | 'closed';
export declare const STATES: readonly ConnectionState[];

export type RoomName = `course:${string}` | `lesson:${string}` | `user:${string}` | `instructor:${string}`;
export type Role = 'student' | 'instructor' | 'admin';

export interface TokenRequest {
  /** why a token is asked for: the first connect, a refresh before expiresAt, or after a 4401 */
  reason: 'connect' | 'refresh' | 'unauthorized';
  /** true when a cached token must not be handed back (refresh, after 4401) */
  forceRefresh: boolean;
}
export type TokenSource = (req: TokenRequest) => Promise<string | { token: string }> | string | { token: string };

export interface BackoffOptions {
  baseMs?: number; // 500: the first retry waits up to this
  maxMs?: number; // 20000
  restartJitterMs?: number; // 1000: after 1012/1013/1001, reconnect within this
  rateLimitMinMs?: number; // 2000: after 4429, at least this
}

export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ClientOptions {
  /** ws(s)://host/ws */
  url: string;
  /** called on every connect, before expiresAt (refresh) and after a 4401 */
  getToken: TokenSource;
  /** default: globalThis.WebSocket (browsers, Node 22+, Node 20 with --experimental-websocket) */
  WebSocket?: WebSocketConstructor;
  /** default true */
  autoConnect?: boolean;
  backoff?: BackoffOptions;
  /** give up (state "closed") after this many failed reconnects; default Infinity */
  maxReconnectAttempts?: number;
  /** ack wait per action once sent; default 10000 */
  actionTimeoutMs?: number;
  /** actions waiting while offline; default 200 (then "queue_full") */
  maxQueue?: number;
  /** actions sent and not yet answered; default 16 */
  maxInFlight?: number;
  /** refresh this long before expiresAt (at most a quarter of the token's remaining life); default 60000 */
  refreshMarginMs?: number;
  connectTimeoutMs?: number;
  authTimeoutMs?: number;
  /** app-level ping after this much silence (browsers cannot see protocol pings); default 20000, 0 = off */
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** client-side pacing below the edge's rate limit; defaults 15/s, burst 30 */
  sendRatePerSec?: number;
  sendBurst?: number;
  /** default ["unpuzzle.v1"] */
  protocols?: string[];
  /** listen to window "online" to skip the backoff; default true */
  watchNetwork?: boolean;
  /** for tests */
  random?: () => number;
  timers?: { setTimeout(fn: () => void, ms: number): any; clearTimeout(h: any): void; now(): number };
}

export interface Session {
  connectionId: string;
  userId: string;
  role: Role;
  /** RFC 3339 */
  expiresAt: string;
}

export type MessageType = 'analytics' | 'confusion' | 'progress' | 'notification' | 'presence' | 'question' | 'purchase';
export type MessageAction = 'create' | 'update' | 'delete';

export interface RoomMessage<P = any> {
  type: MessageType;
  action: MessageAction;
  room: RoomName;
  seq: number;
  prevSeq: number;
  payload: P;
  timestamp?: string;
  userId?: string;
  eventId?: string;
}

export interface Position {
  seq: number;
  epoch: string;
}

export interface SubscribedInfo extends Position {
  room: RoomName;
  recovered: boolean;
}

export interface SubscribeOptions {
  /** resume from a stored position */
  since?: Position;
  /** the server could not replay what was missed (recovered:false): reload state */
  onResync?: (info: SubscribedInfo) => void;
  /** the room was refused (forbidden, too_many_rooms, bad_request) */
  onError?: (err: RealtimeError) => void;
  /** every (re)join */
  onSubscribed?: (info: SubscribedInfo) => void;
}

export interface Ack {
  id: string;
  eventId: string;
  duplicate?: boolean;
  confusionId?: string;
  questionId?: string;
}

export interface RequestOptions {
  timeoutMs?: number;
  /** a queued action with the same key is replaced by this one */
  coalesceKey?: string;
}

export interface DisconnectInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
  delayMs?: number;
  cause?: 'server_restart' | 'slow_consumer' | 'token_expired' | 'unauthorized' | 'rate_limited' | 'connection_lost';
}

export interface GapInfo {
  room: RoomName;
  lastSeq: number;
  prevSeq: number;
  seq: number;
}

export interface ClientEvents {
  state: (state: ConnectionState, prev: ConnectionState) => void;
  open: (session: Session) => void;
  refresh: (session: Session) => void;
  disconnect: (info: DisconnectInfo) => void;
  subscribed: (info: SubscribedInfo) => void;
  /** recovered:false: what was missed is gone; reload snapshots */
  resync: (info: SubscribedInfo) => void;
  gap: (info: GapInfo) => void;
  message: (m: RoomMessage) => void;
  subscriptionError: (err: RealtimeError) => void;
  error: (err: Error) => void;
  unknown: (frame: any) => void;
}

export interface NotificationItem {
  notificationId: string;
  userId: string;
  kind: string;
  title: string;
  body: string;
  link?: string;
  courseId?: string;
  createdAt: string;
  readAt?: string;
  sourceEventId?: string;
}

export interface NotificationList {
  notifications: NotificationItem[];
  unreadCount: number;
  hasMore: boolean;
}

export interface ProgressState {
  positionSec: number;
  durationSec: number;
  playing: boolean;
  completed?: boolean;
}

export declare class RealtimeError extends Error {
  constructor(code: string, message?: string, extra?: object);
  /** bad_request | unauthorized | forbidden | rate_limited | too_many_rooms | not_found | token_expired | internal | timeout | queue_full | closed | token_unavailable | bad_frame */
  code: string;
  id?: string;
  room?: string;
  frame?: any;
}

export declare class RealtimeClient {
  constructor(options: ClientOptions);
  readonly url: string;
  state: ConnectionState;
  session: Session | null;
  readonly stats: { connects: number; reconnects: number; duplicatesDropped: number; gapsRepaired: number; resyncs: number; messages: number };
  /** actions waiting to be sent */
  readonly queued: number;
  /** actions sent and not yet answered */
  readonly inFlight: number;

  connect(): void;
  disconnect(reason?: string): void;
  destroy(): void;

  on<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): () => void;
  once<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): () => void;
  off<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): void;

  subscribe<P = any>(room: RoomName | string, handler: (m: RoomMessage<P>) => void, opts?: SubscribeOptions): () => void;
  position(room: string): Position | null;
  rooms(): string[];

  request<T = Ack>(type: string, action: string | undefined, payload: object | undefined, opts?: RequestOptions): Promise<T>;
  markConfusion(a: { courseId: string; lessonId: string; videoTimestampSec: number; text?: string }, opts?: RequestOptions): Promise<Ack & { confusionId: string }>;
  resolveConfusion(a: { courseId: string; confusionId: string; response?: string }, opts?: RequestOptions): Promise<Ack>;
  askQuestion(a: { courseId: string; lessonId?: string; text: string }, opts?: RequestOptions): Promise<Ack & { questionId: string }>;
  answerQuestion(a: { courseId: string; questionId: string; answer: string }, opts?: RequestOptions): Promise<Ack>;
  reportProgress(a: { courseId: string; lessonId: string } & ProgressState, opts?: RequestOptions): Promise<Ack>;
  promptShown(a: { courseId: string; lessonId: string; promptId: string; kind: 'quiz' | 'reflection' }, opts?: RequestOptions): Promise<Ack>;
  promptResponded(a: { courseId: string; lessonId: string; promptId: string; kind: 'quiz' | 'reflection'; action: 'completed' | 'skipped' }, opts?: RequestOptions): Promise<Ack>;
  markNotificationsRead(ids: string[] | string, opts?: RequestOptions): Promise<Ack>;
  listNotifications(q?: { unreadOnly?: boolean; limit?: number; before?: string }, opts?: RequestOptions): Promise<NotificationList>;
  trackProgress(a: { courseId: string; lessonId: string; read: () => ProgressState; intervalMs?: number }): { beat(): Promise<Ack | null>; stop(): void };
  ping(opts?: RequestOptions): Promise<{ type: 'pong'; id: string; serverTime: string }>;
}

export declare function createClient(options: ClientOptions): RealtimeClient;

/** Heartbeats of a <video>: now, every intervalMs (<= 15 s) playing or paused, on play/pause/seeked/ended. Returns stop(). */
export declare function trackVideo(client: RealtimeClient, video: HTMLVideoElement, opts: { courseId: string; lessonId: string; intervalMs?: number }): () => void;

export declare function splitFrame(text: string, onBadLine?: (line: string, err: unknown) => void): any[];
export declare const DEFAULT_BACKOFF: Readonly<Required<BackoffOptions>>;
export declare function fullJitter(attempt: number, opts?: BackoffOptions, random?: () => number): number;
export declare function reconnectPlan(code: number, attempt: number, wasOpen: boolean, opts?: BackoffOptions, random?: () => number): { delayMs: number; attempt: number; freshToken: boolean; reason: string };

export declare class Emitter {
  on(name: string, fn: (...args: any[]) => void): () => void;
  once(name: string, fn: (...args: any[]) => void): () => void;
  off(name: string, fn: (...args: any[]) => void): void;
  emit(name: string, ...args: any[]): boolean;
}

// CourseMetrics (proto/unpuzzle/rt/v1/analytics.proto in lowerCamelCase; null = no value)
export type Band = 'poor' | 'fair' | 'good' | 'very_good' | 'excellent' | '';
export interface ActiveStudent { userId: string; lessonId?: string; since?: string }
export interface StrugglingTopic { lessonId: string; timestamp: string; bucketStartSec: number; studentCount: number; resolved: boolean }
export interface CurrencyRevenue { currency: string; todayCents: number | string; monthCents: number | string; allTimeCents: number | string }
export interface DailyPoint { date: string; learnRate: number | null; executionRate: number | null; watchMinutes: number }
export interface StudentInsight {
  userId: string; learnRate: number | null; executionRate: number | null; executionPaceS: number | null; progress: number | null;
  lastActiveAt?: string; needsHelp: boolean; learnRateBand: Band; executionRateBand: Band;
}
export interface CourseMetrics {
  courseId: string;
  end: string;
  windowS: number;
  learnRate: number | null;
  learnRateBand: Band;
  executionRate: number | null;
  executionRateBand: Band;
  executionPaceS: number | null;
  activeStudentCount: number;
  activeStudents: ActiveStudent[];
  completionRate: number | null;
  avgProgress: number | null;
  confusions: { open: number | string; inWindow: number | string; total: number | string };
  strugglingTopics: StrugglingTopic[];
  responseTime: { medianS: number | null; p90S: number | null; waiting: number | string; oldestWaitingS: number | null };
  revenue: { currencies: CurrencyRevenue[]; lastPurchase?: { purchaseId: string; userId: string; amountCents: number | string; currency: string; occurredAt: string } };
  daily: DailyPoint[];
  students?: StudentInsight[];
  enrolledStudents: number;
}

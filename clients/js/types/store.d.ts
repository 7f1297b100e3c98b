import type { ActiveStudent, ConnectionState, CourseMetrics, RealtimeClient, RoomMessage, SubscribedInfo } from './index.js';
import type { LiveConfusion } from './react.js';

export declare const RECENT_EVENTS_MAX: 100;
export declare const LIVE_CONFUSIONS_MAX: 50;

export interface RealtimeState {
  wsStatus: ConnectionState;
  /** newest first, at most 100 */
  recentEvents: RoomMessage[];
  unreadNotifications: number;
  /** newest first, at most 50 */
  liveConfusions: LiveConfusion[];
  /** courseId -> latest CourseMetrics */
  liveAnalytics: Record<string, CourseMetrics>;
  /** "who is watching" of the latest analytics update */
  activeStudents: ActiveStudent[];
  /** set when the server could not replay a room (recovered:false): reload snapshots */
  lastResync: SubscribedInfo | null;
}

export interface RealtimeActions {
  connectRealtime(client: RealtimeClient, opts?: { courseId?: string; instructorId?: string; userRoom?: boolean }): () => void;
  disconnectRealtime(): void;
  ingestRealtimeMessage(m: RoomMessage): void;
  setUnreadNotifications(n: number): void;
}

export type RealtimeSlice = RealtimeState & RealtimeActions;

type SetState<T> = (partial: Partial<T> | ((s: T) => Partial<T>)) => void;
type GetState<T> = () => T;

export declare function createRealtimeSlice<T extends RealtimeSlice = RealtimeSlice>(): (set: SetState<T>, get: GetState<T>, ...rest: any[]) => RealtimeSlice;
export declare function initialRealtimeState(): RealtimeState;
export declare function reduceRealtimeMessage(state: RealtimeState, m: RoomMessage): Partial<RealtimeState>;

import type { ReactNode } from 'react';
import type { Ack, ClientOptions, ConnectionState, CourseMetrics, NotificationItem, ProgressState, RealtimeClient, RealtimeError, RoomMessage, Session } from './index.js';

export type RealtimeProviderProps = ({ client: RealtimeClient } | ({ client?: undefined } & ClientOptions)) & { children?: ReactNode };
export declare function RealtimeProvider(props: RealtimeProviderProps): ReactNode;
export declare function useRealtimeClient(): RealtimeClient | null;
export declare function useRealtime(): { client: RealtimeClient | null; status: ConnectionState; session: Session | null };

export interface RoomState<P = any> {
  messages: RoomMessage<P>[];
  last: RoomMessage<P> | null;
  status: 'idle' | 'joining' | 'joined' | 'error';
  error: RealtimeError | null;
  resyncs: number;
}
export declare function useRoom<P = any>(room: string | null | undefined, opts?: { onMessage?: (m: RoomMessage<P>) => void; limit?: number }): RoomState<P>;

export declare function useCourseAnalytics(courseId: string | null | undefined, opts?: { instructorId?: string }): {
  metrics: CourseMetrics | null;
  updatedAt: string | null;
  status: RoomState['status'];
  error: RealtimeError | null;
};

export interface LessonProgress extends ProgressState {
  from: 'this-device' | 'other-device';
  at?: string;
}
export declare function useLessonProgress(lessonId: string, opts: { courseId: string }): {
  progress: LessonProgress | null;
  report(s: ProgressState): Promise<Ack>;
};

export interface LiveConfusion {
  confusionId: string;
  courseId: string;
  lessonId: string;
  userId: string;
  videoTimestampSec: number;
  text: string;
  createdAt?: string;
  resolved: boolean;
  response?: string;
}
export declare function useConfusions(courseId: string, opts?: { limit?: number }): {
  confusions: LiveConfusion[];
  open: number;
  markConfusion(a: { lessonId: string; videoTimestampSec: number; text?: string }): Promise<Ack & { confusionId: string }>;
  resolveConfusion(confusionId: string, response?: string): Promise<Ack>;
};

export declare function useNotifications(opts?: { limit?: number }): {
  notifications: NotificationItem[];
  unreadCount: number;
  error: RealtimeError | null;
  markRead(ids: string[] | string): Promise<Ack>;
  reload(): Promise<void>;
};

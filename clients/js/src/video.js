// Progress heartbeats for a <video> element (docs/protocol.md: a heartbeat
// every <= 15 s while a lesson is open, paused or not).

/**
 * Reports the video's position through client.reportProgress now, every
 * intervalMs (<= 15 s) whether it plays or not, and at once on play, pause,
 * seeked and ended (ended sends completed:true). Returns stop().
 */
export function trackVideo(client, video, { courseId, lessonId, intervalMs = 15000 } = {}) {
  if (!video || typeof video.addEventListener !== 'function') throw new TypeError('trackVideo: a <video> element is required');
  let completed = false;
  const read = () => {
    const duration = Number.isFinite(video.duration) ? video.duration : 0;
    const s = {
      positionSec: Number(video.currentTime) || 0,
      durationSec: duration,
      playing: !video.paused && !video.ended,
    };
    if (video.ended && !completed) {
      completed = true;
      s.completed = true;
    }
    return s;
  };
  const tracker = client.trackProgress({ courseId, lessonId, intervalMs, read });
  const events = ['play', 'pause', 'seeked', 'ended'];
  const onEvent = () => tracker.beat();
  for (const e of events) video.addEventListener(e, onEvent);
  return () => {
    tracker.stop();
    for (const e of events) video.removeEventListener(e, onEvent);
  };
}

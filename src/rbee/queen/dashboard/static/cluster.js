// The live cluster: ONE EventSource on /ui/events shared by every page. The queen pushes
// the whole view on each change (server push: no page polls).

export function createCluster(onSessionEnded) {
  const listeners = new Set();
  let source = null;
  let last = null;

  function open() {
    if (source) return;
    source = new EventSource("/ui/events", { withCredentials: true });
    source.addEventListener("cluster", (e) => {
      last = JSON.parse(e.data);
      for (const fn of [...listeners]) fn(last);
    });
    source.addEventListener("session_ended", () => {
      close();
      onSessionEnded();
    });
    // On an error EventSource reconnects by itself (the `retry:` the queen sent).
  }

  function close() {
    if (source) source.close();
    source = null;
    last = null;
  }

  return {
    open,
    close,
    get current() { return last; },
    // fn(state) now (if a state arrived already) and on every push; returns unsubscribe.
    subscribe(fn) {
      listeners.add(fn);
      if (last) fn(last);
      return () => listeners.delete(fn);
    },
  };
}

// A minimal event emitter: on(name, fn) returns the function that removes fn.
export class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  on(name, fn) {
    if (typeof fn !== 'function') throw new TypeError('handler must be a function');
    let set = this._handlers.get(name);
    if (!set) this._handlers.set(name, (set = new Set()));
    set.add(fn);
    return () => this.off(name, fn);
  }

  once(name, fn) {
    const off = this.on(name, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  off(name, fn) {
    const set = this._handlers.get(name);
    if (set) set.delete(fn);
  }

  emit(name, ...args) {
    const set = this._handlers.get(name);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A throwing listener must not break the client's state machine.
        if (name !== 'error') this.emit('error', err);
        else queueMicrotask(() => { throw err; });
      }
    }
    return true;
  }
}

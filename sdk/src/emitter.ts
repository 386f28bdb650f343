/** A listener of event `K` of an event map `M`. */
export type Listener<M, K extends keyof M> = (payload: M[K]) => void;

/** A tiny typed event emitter (no dependency on Node or DOM events). */
export class Emitter<M> {
  private listeners = new Map<keyof M, Set<Listener<M, any>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof M>(event: K, fn: Listener<M, K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** Adds a listener called at most once. */
  once<K extends keyof M>(event: K, fn: Listener<M, K>): () => void {
    const off = this.on(event, (p) => {
      off();
      fn(p);
    });
    return off;
  }

  /** Removes a listener. */
  off<K extends keyof M>(event: K, fn: Listener<M, K>): void {
    this.listeners.get(event)?.delete(fn);
  }

  /** @internal */
  protected emit<K extends keyof M>(event: K, payload: M[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (e) {
        // A throwing listener must not break the SDK's own state handling.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

// The audio mixer feature (`features.mixer`): the server puts the loudest speakers
// of the room (AUTO) or of the attached sources (MANUAL) on a fixed number of audio
// output receivers; the browser plays them all.
import type { ServerEvent as FeaturesEvent } from './gen/features_pb.js';
import { Mode } from './gen/features.mixer_pb.js';
import { Emitter } from './emitter.js';
import type { TrackSource } from './types.js';

/** Options of the mixer, given to `connect({ mixer })`. */
export interface MixerOptions {
  /** `auto` (default): the room's loudest other speakers; `manual`: only attached sources. */
  mode?: 'auto' | 'manual';
  /** Number of output slots (audio receivers reserved for the mixer). */
  outputs: number;
  /** Sources to start with (MANUAL mode mixes only these). */
  sources?: TrackSource[];
}

/** Events of {@link AudioMixer}. */
export interface MixerEvents {
  /** Output `slot` now plays `source` (`null`: silent). */
  slot: { slot: number; source: TrackSource | null };
  /** Voice level (RFC 6464 dBov, 0 loudest) of what output `slot` plays. */
  voiceActivity: { slot: number; source: TrackSource | null; level: number };
}

/** What the mixer needs from its session. @internal */
export interface MixerHost {
  requestMixer(action: { case: 'attach' | 'detach'; value: { sources: TrackSource[] } }): Promise<unknown>;
}

/** An output of the mixer: one audio receiver. */
export interface MixerOutput {
  /** The receiver's name (announced to the server as `features.mixer.outputs[i]`). */
  name: string;
  /** Plays what the slot carries; the same stream whatever source the slot switches to. */
  stream: MediaStream;
}

const key = (s: TrackSource) => `${s.peer}\u0000${s.track}`;

/**
 * The audio mixer of a session (`session.mixer`, when connected with `mixer`). Play
 * every `outputs[i].stream` (e.g. in `<audio>` elements); `slots` tells who is on each.
 */
export class AudioMixer extends Emitter<MixerEvents> {
  readonly mode: 'auto' | 'manual';
  private _slots: (TrackSource | null)[];
  private _sources: TrackSource[];

  /** @internal Created by the session. */
  constructor(
    private readonly host: MixerHost,
    readonly outputs: readonly MixerOutput[],
    options: MixerOptions,
  ) {
    super();
    this.mode = options.mode ?? 'auto';
    this._slots = outputs.map(() => null);
    this._sources = [...(options.sources ?? [])];
  }

  /** Who each output plays now (snapshot, a new array after every change). */
  get slots(): readonly (TrackSource | null)[] {
    return this._slots;
  }

  /** The attached sources. */
  get sources(): readonly TrackSource[] {
    return this._sources;
  }

  /** Adds sources (in MANUAL mode the mixer chooses among these only). */
  async attach(sources: TrackSource[]): Promise<void> {
    const fresh = sources.filter((s) => !this._sources.some((x) => key(x) === key(s)));
    await this.host.requestMixer({ case: 'attach', value: { sources: fresh } });
    this._sources = [...this._sources, ...fresh];
  }

  /** Removes sources; a slot they held goes silent or to another speaker. */
  async detach(sources: TrackSource[]): Promise<void> {
    const gone = new Set(sources.map(key));
    await this.host.requestMixer({ case: 'detach', value: { sources } });
    this._sources = this._sources.filter((s) => !gone.has(key(s)));
  }

  /** @internal The `features.mixer` part of the room join. */
  joinConfig() {
    return {
      mode: this.mode === 'manual' ? Mode.MANUAL : Mode.AUTO,
      outputs: this.outputs.map((o) => o.name),
      sources: this._sources.map((s) => ({ peer: s.peer, track: s.track })),
    };
  }

  /** @internal A `features` server event. */
  onEvent(e: FeaturesEvent) {
    if (e.feature.case !== 'mixer') return;
    const ev = e.feature.value.event;
    let slot: number;
    let source: TrackSource | null;
    if (ev.case === 'slotSet') {
      slot = ev.value.slot;
      source = ev.value.source ? { peer: ev.value.source.peer, track: ev.value.source.track } : null;
    } else if (ev.case === 'slotUnset') {
      slot = ev.value.slot;
      source = null;
    } else {
      return;
    }
    if (slot >= this._slots.length) return;
    this._slots = this._slots.map((s, i) => (i === slot ? source : s));
    this.emit('slot', { slot, source });
  }

  /** @internal Voice activity of a receiver: reported when it is an output. */
  onVoice(receiver: string, level: number): boolean {
    const slot = this.outputs.findIndex((o) => o.name === receiver);
    if (slot < 0) return false;
    this.emit('voiceActivity', { slot, source: this._slots[slot] ?? null, level });
    return true;
  }

  /** @internal The session left its room: every slot is silent. */
  reset() {
    this._slots = this.outputs.map(() => null);
  }
}

/** Options of `init`. */
export interface AttuneOptions {
  /** Where batches go: the edge's or the origin's `/v1/collect` or `/v1/events`. */
  endpoint: string;
  /** The site's public key. */
  siteKey: string;
  /** Send queued events at least this often, ms (default 5000). */
  flushInterval?: number;
  /** Send as soon as this many events are queued (default 20). */
  flushAt?: number;
  /** Most events kept unsent in memory and localStorage; the oldest go first (default 1000). */
  maxQueue?: number;
  /** Dwell pauses after this long without input, ms (default 30000). */
  idleTimeout?: number;
  /** Elements whose clicks and visible time are tracked (default `[data-attune-item]`). */
  itemSelector?: string;
  /** Recommended items, whose impressions are tracked (default `[data-attune-rec]`). */
  recSelector?: string;
  /** Send nothing when Do-Not-Track or Global Privacy Control is on (default false). */
  respectDoNotTrack?: boolean;
  /** Record nothing, in memory or storage, until `consent(true)` (default false). */
  requireConsent?: boolean;
  /** Record a page view when history.pushState/replaceState or popstate change the page's identity (default true). */
  trackHistory?: boolean;
  /**
   * The page's identity: a history change is a new view only when it changes
   * (default: path + query, so `#anchors` and routers saving scroll state
   * are not views; `(l) => l.pathname + l.search + l.hash` counts fragments).
   */
  pageKey?: (location: Location) => string;
  /** Where the .wasm file is, if not beside the module. */
  wasmUrl?: string | URL;
}

export type EventKind = "page_view" | "click" | "scroll" | "dwell" | "impression";

/** Extra data of `track`: the item, scroll `depth` (0–100) or dwell `ms`. */
export interface TrackProps {
  item?: string;
  depth?: number;
  ms?: number;
  /** A click or impression of a recommended item: the reply's `serve_id`… */
  serveId?: string;
  /** …and the position it was shown at, 0 first. */
  position?: number;
}

export interface Attune {
  /** Records an event; false for an unknown kind or a click/impression without item. */
  track(kind: EventKind, props?: TrackProps): boolean;
  /**
   * Records a page view (automatic on load and SPA navigation). `item`: the
   * item the page shows; without it, `<meta name="attune:item" content="…">`.
   * The view, the page's scroll depth and its visible time carry the item.
   */
  page(props?: { item?: string }): void;
  /** Sets the signed user token minted by the site's back end; undefined clears it. */
  identify(userToken?: string): void;
  /** Sends everything queued now. */
  flush(): Promise<void>;
  /** Stops tracking and forgets what was queued; remembered across visits. */
  optOut(): void;
  /** Resumes after optOut(), from the page as it is: a page view and what is in view now. */
  optIn(): void;
  /**
   * With requireConsent: grants consent (tracking starts on the page as it
   * is) or withdraws it (everything unsent is forgotten).
   */
  consent(granted: boolean): void;
}

/** Loads the wasm engine and starts tracking. */
export function init(options: AttuneOptions): Promise<Attune>;
